"""Run one node of a distributed run (server, device, compute node, aggregator, central node or worker).

Start the coordinating node (the server; MP-SL's aggregator, FTPipeHD's central node) first,
then every other node with --coordinator pointing at it. Every node reads the same config;
the coordinator checks that they agree, assigns the work and writes the report.
"""

from __future__ import annotations

import argparse

from splitpipe.cli.flags import add_flags, given, parse_options
from splitpipe.config import RunConfig
from splitpipe.options import load_toml
from splitpipe.runtime.options import NodeOptions

__all__ = ["add_arguments", "execute", "node_options"]

#: Run options a node may set for itself (they do not change what is trained).
LOCAL = ("server_device", "out", "progress")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_flags(parser, NodeOptions)
    parser.add_argument("--config", required=True, help="the run's TOML file, the same on every node")
    add_flags(parser, RunConfig, only=LOCAL)


def node_options(args: argparse.Namespace) -> NodeOptions:
    """NodeOptions from the flags, the run config from --config with this node's own LOCAL flags over it."""
    config = parse_options(RunConfig, given(args, RunConfig), load_toml(args.config), source=args.config)
    options: NodeOptions = parse_options(NodeOptions, given(args, NodeOptions), config=config)
    return options


def execute(args: argparse.Namespace) -> int:
    from splitpipe.runtime.entry import run_node

    return run_node(node_options(args))
