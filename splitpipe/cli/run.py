"""Train one technique on the emulator and report where the time went."""

from __future__ import annotations

import argparse

from splitpipe.cli.options import add_experiment_flags, config_from_args
from splitpipe.cli.progress import epoch_bar
from splitpipe.experiment import emulate, prepare
from splitpipe.report import format_table, summarize, write_run

__all__ = ["add_arguments", "execute"]

COLUMNS = ["epoch", "time_s", "predicted_time_s", "bound_s", "efficiency", "throughput_Bps", "train_loss",
           "test_accuracy"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_experiment_flags(parser)
    parser.add_argument("--technique", help="fl, sl, sfl, pipelearn, mpsl or ftpipehd (default: pipelearn)")


def execute(args: argparse.Namespace) -> int:
    config = config_from_args(args, technique=args.technique)
    setup = prepare(config)
    with epoch_bar(config.epochs, config.technique, config.progress) as progress:
        result = emulate(setup, progress)
    epochs = result.report["epochs"]
    print(format_table(epochs, COLUMNS))  # type: ignore[arg-type]
    s = summarize(result.report)
    print(f"{config.technique}: {s['epoch_time_s']:.4g} s per epoch (emulated, {result.report['timing']} timing), "
          f"efficiency {s['efficiency']:.3f}, test accuracy {s['test_accuracy']:.3f}")
    if config.out:
        for path in write_run(config.out, result.report, result.spans):
            print(f"wrote {path}")
    return 0
