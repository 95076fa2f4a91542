"""Train several techniques on the same plan and compare epoch time, idle time and accuracy."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Annotated

from pydantic import Field

from splitpipe.cli.flags import add_flags, given, parse_options
from splitpipe.cli.options import add_experiment_flags, config_from_args
from splitpipe.options import Names, Options
from splitpipe.schedules.registry import COMPARED

__all__ = ["add_arguments", "execute", "CompareOptions"]

class CompareOptions(Options):
    techniques: Names = COMPARED
    """techniques to compare, each trained on the same plan"""
    target_accuracy: Annotated[float, Field(gt=0, le=1)] | None = None
    """also report each technique's time to reach this test accuracy (a fraction, e.g. 0.9)"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_experiment_flags(parser, exclude=("technique",))
    add_flags(parser, CompareOptions)


def parse_techniques(names: tuple[str, ...]) -> list[str]:
    from splitpipe.schedules import TECHNIQUES

    unknown = [t for t in names if t not in TECHNIQUES]
    if unknown or not names:
        raise ValueError(f"unknown technique '{','.join(unknown)}'; choose from: {', '.join(TECHNIQUES)}")
    return list(names)


def execute(args: argparse.Namespace) -> int:
    from splitpipe.checkpoint import save_run_model
    from splitpipe.cli.run import writable_folder
    from splitpipe.experiment import emulate, prepare
    from splitpipe.report import write_compare, write_run
    from splitpipe.report.console import epoch_progress, print_compare

    options: CompareOptions = parse_options(CompareOptions, given(args, CompareOptions))
    techniques = parse_techniques(options.techniques)
    base = config_from_args(args)
    if base.out:
        writable_folder(base.out)
    configs = {t: base.with_(technique=t) for t in techniques}
    setups = {t: prepare(c) for t, c in configs.items()}  # every bad value fails before training
    reports = {}
    for technique, setup in setups.items():
        with epoch_progress(setup.config, technique, subfolder=technique) as progress:
            result = emulate(setup, progress)
        reports[technique] = result.report
        if base.out:
            write_run(Path(base.out) / technique, result.report, result.spans)
            if result.model is not None:
                save_run_model(Path(base.out) / technique, setup, result.model)
    print_compare(reports, options.target_accuracy)
    if base.out:
        for path in write_compare(base.out, reports, options.target_accuracy):
            print(f"wrote {path}")
    return 0
