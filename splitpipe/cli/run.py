"""Train one technique on the emulator and report where the time went."""

from __future__ import annotations

import argparse

from splitpipe.cli.options import add_experiment_flags, config_from_args

__all__ = ["add_arguments", "execute"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_experiment_flags(parser)


def execute(args: argparse.Namespace) -> int:
    from splitpipe.experiment import emulate, prepare
    from splitpipe.report.console import epoch_bar, show_run

    config = config_from_args(args)
    setup = prepare(config)
    with epoch_bar(config.epochs, config.technique, config.progress) as progress:
        result = emulate(setup, progress)
    show_run(result.report, result.spans, config.out, f"emulated, {result.report['timing']} timing")
    return 0
