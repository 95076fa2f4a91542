"""Run a whole distributed cluster on this machine: one process per node over loopback gRPC.

The same report as `splitpipe run` (engine "distributed"), measured on the wall clock: link
shaping happens in each sender, so --network 4g means what it means in the emulator.
"""

from __future__ import annotations

import argparse
import sys

from splitpipe.cli.flags import add_flags, given, parse_options
from splitpipe.cli.options import add_experiment_flags, config_from_args
from splitpipe.runtime.options import LaunchOptions

__all__ = ["add_arguments", "execute"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_experiment_flags(parser)
    add_flags(parser, LaunchOptions)


def execute(args: argparse.Namespace) -> int:
    from splitpipe.cli.run import resumed_config, writable_folder
    from splitpipe.runtime.launcher import ClusterFailed, launch

    cluster: LaunchOptions = parse_options(LaunchOptions, given(args, LaunchOptions))
    config = resumed_config(cluster.resume, args) if cluster.resume else config_from_args(args)
    if config.out:
        writable_folder(config.out)
    try:
        launch(config, timeout=cluster.timeout, emulate_speed=cluster.emulate_speed, threads=cluster.threads,
               processes=cluster.processes, silence=cluster.silence, resume=cluster.resume)
    except ClusterFailed as exc:
        print(f"splitpipe launch: error: {exc}", file=sys.stderr)
        return 1
    return 0
