"""Train one technique on the emulator and report where the time went."""

from __future__ import annotations

import argparse

from splitpipe.cli.options import add_experiment_flags, config_from_args
from splitpipe.cli.output import show_run
from splitpipe.cli.progress import epoch_progress
from splitpipe.experiment import emulate, prepare

__all__ = ["add_arguments", "execute"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_experiment_flags(parser)
    parser.add_argument("--technique", help="fl, sl, sfl, pipelearn, mpsl or ftpipehd (default: pipelearn)")


def execute(args: argparse.Namespace) -> int:
    config = config_from_args(args, technique=args.technique)
    setup = prepare(config)
    with epoch_progress(config, config.technique) as progress:
        result = emulate(setup, progress)
    show_run(result.report, result.spans, config.out, f"emulated, {result.report['timing']} timing")
    return 0
