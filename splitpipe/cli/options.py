"""The experiment flags shared by run, compare, plan and launch, and their merge with a TOML file."""

from __future__ import annotations

import argparse
from collections.abc import Collection
from typing import Any

from splitpipe.cli.flags import add_flags, given, parse_options
from splitpipe.config import RunConfig
from splitpipe.options import load_toml

__all__ = ["add_experiment_flags", "config_from_args"]


def add_experiment_flags(parser: argparse.ArgumentParser, exclude: Collection[str] = ()) -> None:
    """Add the config argument and a flag for every RunConfig option but those in `exclude` (a command's own)."""
    parser.add_argument("config", nargs="?", help="optional TOML file; its keys are the flag names with underscores")
    add_flags(parser, RunConfig, exclude=exclude)


def config_from_args(args: argparse.Namespace, exclude: Collection[str] = (), **overrides: Any) -> RunConfig:
    """Defaults, then the TOML file, then the flags given on the command line (but `exclude`, as
    in add_experiment_flags), then `overrides`."""
    path = getattr(args, "config", None)
    file_values = load_toml(path) if path else {}
    flags = {k: v for k, v in given(args, RunConfig).items() if k not in exclude}
    flags |= {k: v for k, v in overrides.items() if v is not None}
    config: RunConfig = parse_options(RunConfig, flags, file_values, source=str(path or ""))
    return config
