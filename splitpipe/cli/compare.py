"""Train several techniques on the same plan and compare epoch time, idle time and accuracy."""

from __future__ import annotations

import argparse
from pathlib import Path

from splitpipe.cli.options import add_experiment_flags, config_from_args
from splitpipe.cli.output import print_compare
from splitpipe.cli.progress import epoch_progress
from splitpipe.experiment import emulate, prepare
from splitpipe.report import write_compare, write_run
from splitpipe.report.accuracy import check_target
from splitpipe.schedules import TECHNIQUES

__all__ = ["add_arguments", "execute"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_experiment_flags(parser)
    parser.add_argument("--techniques", default="fl,sl,sfl,pipelearn",
                        help="comma list of techniques (default: fl,sl,sfl,pipelearn)")
    parser.add_argument("--target-accuracy", type=float, metavar="A",
                        help="also report each technique's time to reach test accuracy A (a fraction, e.g. 0.9)")


def parse_techniques(text: str) -> list[str]:
    names = [t.strip() for t in text.split(",") if t.strip()]
    unknown = [t for t in names if t not in TECHNIQUES]
    if unknown or not names:
        raise ValueError(f"unknown technique '{','.join(unknown) or text}'; choose from: {', '.join(TECHNIQUES)}")
    return names


def execute(args: argparse.Namespace) -> int:
    techniques = parse_techniques(args.techniques)
    target = None if args.target_accuracy is None else _target(args.target_accuracy)
    base = config_from_args(args)
    configs = {t: base.with_(technique=t) for t in techniques}
    setups = {t: prepare(c) for t, c in configs.items()}  # every bad value fails before training
    reports = {}
    for technique, setup in setups.items():
        with epoch_progress(setup.config, technique, subfolder=technique) as progress:
            result = emulate(setup, progress)
        reports[technique] = result.report
        if base.out:
            write_run(Path(base.out) / technique, result.report, result.spans)
    print_compare(reports, target)
    if base.out:
        for path in write_compare(base.out, reports, target):
            print(f"wrote {path}")
    return 0


def _target(value: float) -> float:
    try:
        return check_target(value)
    except ValueError:
        raise ValueError(f"--target-accuracy must be in (0, 1] (0.9 for 90%), got {value:g}") from None
