"""Make an Ed25519 key pair per node: NODE.key (private, 0600) for each node, public.json for all of them.

Give each node its own NODE.key and everyone public.json; a node then accepts a stream only
from a node that signs the stream's fresh challenge with the key public.json lists for it.
"""

from __future__ import annotations

import argparse

__all__ = ["add_arguments", "execute"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--nodes", required=True, help="comma-separated node names, e.g. server,device0,device1")
    parser.add_argument("--out", required=True, help="folder for NODE.key files and public.json (added to)")


def execute(args: argparse.Namespace) -> int:
    from splitpipe.runtime.transport.identity import make_keys

    names = [n.strip() for n in args.nodes.split(",") if n.strip()]
    for path in make_keys(names, args.out):
        print(f"wrote {path}")
    return 0
