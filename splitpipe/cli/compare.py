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
    """techniques to compare, each trained on the same plan; NAME:KEY=VALUE gives one of them its own option,
    as in sfl:servers=2 (several: sfl:servers=2+split=3)"""
    target_accuracy: Annotated[float, Field(gt=0, le=1)] | None = None
    """also report each technique's time to reach this test accuracy (a fraction, e.g. 0.9)"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_experiment_flags(parser, exclude=("technique",))
    add_flags(parser, CompareOptions)


def _value(text: str) -> object:
    """"2" -> 2, "0.5" -> 0.5, anything else stays text (the option's own check reads it)."""
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def parse_techniques(names: tuple[str, ...]) -> dict[str, tuple[str, dict[str, object]]]:
    """Each entry's label -> (technique, its own options): "sfl:servers=2" -> ("sfl", {"servers": 2})."""
    from splitpipe.schedules import TECHNIQUES

    entries: dict[str, tuple[str, dict[str, object]]] = {}
    for entry in names:
        name, _, spec = entry.partition(":")
        if name not in TECHNIQUES:
            raise ValueError(f"unknown technique '{name}'; choose from: {', '.join(TECHNIQUES)}")
        pairs = [pair.partition("=") for pair in filter(None, spec.split("+"))]
        if any(not key or not sep or not value for key, sep, value in pairs):
            raise ValueError(f"technique entry {entry!r} must be NAME or NAME:KEY=VALUE[+KEY=VALUE], "
                             "as in sfl:servers=2")
        entries[entry] = (name, {key.replace("-", "_"): _value(value) for key, _, value in pairs})
    if not entries:
        raise ValueError(f"no technique to compare; choose from: {', '.join(TECHNIQUES)}")
    return entries


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
    configs = {label: base.with_(technique=name, **own) for label, (name, own) in techniques.items()}
    setups = {t: prepare(c) for t, c in configs.items()}  # every bad value fails before training
    reports = {}
    for technique, setup in setups.items():
        folder = technique.replace(":", "_").replace("+", "_")  # sfl:servers=2 -> sfl_servers=2
        with epoch_progress(setup.config, technique, subfolder=folder) as progress:
            result = emulate(setup, progress)
        reports[technique] = result.report
        if base.out:
            write_run(Path(base.out) / folder, result.report, result.spans)
            if result.model is not None:
                save_run_model(Path(base.out) / folder, setup, result.model)
    print_compare(reports, options.target_accuracy)
    if base.out:
        for path in write_compare(base.out, reports, options.target_accuracy):
            print(f"wrote {path}")
    return 0
