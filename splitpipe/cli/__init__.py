"""The `splitpipe` command: one module per subcommand, registered in COMMANDS."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

from splitpipe.cli import compare, keys, launch, node, plan, profile, run, show

__all__ = ["main", "entry"]

#: name -> module with `add_arguments(parser)`, `execute(args) -> int` and a docstring.
COMMANDS = {"run": run, "compare": compare, "node": node, "launch": launch, "plan": plan, "profile": profile,
            "show": show, "keys": keys}


class OneLineParser(argparse.ArgumentParser):
    """Usage errors are one line that names the bad flag or value (the usage is under --help)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="splitpipe",
        description="Pipeline-parallel collaborative learning: emulate, predict and run FL, SL, SFL, PipeLearn and more.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, module in COMMANDS.items():
        doc = (module.__doc__ or "").strip()
        p = sub.add_parser(name, help=doc.splitlines()[0] if doc else name, description=doc)
        module.add_arguments(p)
        p.set_defaults(execute=module.execute)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        return int(args.execute(args))
    except (ValueError, OSError) as exc:  # bad input, a file missing or unreadable: one line
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        print(f"splitpipe {args.command}: error: {message}", file=sys.stderr)
        return 2
    except RuntimeError as exc:  # a run that cannot go on (a stuck schedule, a dead server): one line
        if os.environ.get("SPLITPIPE_DEBUG"):
            raise
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        print(f"splitpipe {args.command}: error: {message} (SPLITPIPE_DEBUG=1 shows where)", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("splitpipe: interrupted", file=sys.stderr)
        return 130


def entry() -> NoReturn:
    """The `splitpipe` program (console script and `python -m splitpipe`): `main`, then exit.

    A `node` process ends without interpreter finalization, as a launched node does
    (runtime/entry.py `exit_process` says why: a transport thread inside a torch call can abort
    the process at finalization although the run went well).
    """
    code = main(sys.argv[1:])
    if sys.argv[1:2] == ["node"]:
        from splitpipe.runtime.entry import exit_process

        exit_process(code)
    sys.exit(code)


if __name__ == "__main__":  # pragma: no cover
    entry()
