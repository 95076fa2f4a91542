"""Run a whole distributed cluster on this machine: one process per node over loopback gRPC.

The same report as `splitpipe run` (engine "distributed"), measured on the wall clock: link
shaping happens in each sender, so --network 4g means what it means in the emulator.
"""

from __future__ import annotations

import argparse
import sys

from splitpipe.cli.options import add_experiment_flags, config_from_args
from splitpipe.runtime.launcher import ClusterFailed, launch

__all__ = ["add_arguments", "execute"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_experiment_flags(parser)
    parser.add_argument("--technique", help="fl, sl, sfl, pipelearn, mpsl or ftpipehd (default: pipelearn)")
    parser.add_argument("--timeout", type=float, default=600.0,
                        help="seconds any phase of the run may wait before it fails (default: 600)")
    parser.add_argument("--threads", type=int, help="torch CPU threads per node (default: CPUs / nodes)")
    parser.add_argument("--emulate-speed", action="store_true",
                        help="stretch each node's compute to measured / speed (--device-speed, --server-speed), "
                             "to stand in for slower devices on this machine")


def execute(args: argparse.Namespace) -> int:
    config = config_from_args(args, technique=args.technique)
    if not args.timeout > 0:
        raise ValueError(f"--timeout must be > 0 seconds, got {args.timeout:g}")
    if args.threads is not None and args.threads < 1:
        raise ValueError(f"--threads must be >= 1, got {args.threads}")
    try:
        launch(config, timeout=args.timeout, emulate_speed=args.emulate_speed, threads=args.threads)
    except ClusterFailed as exc:
        print(f"splitpipe launch: error: {exc}", file=sys.stderr)
        return 1
    return 0
