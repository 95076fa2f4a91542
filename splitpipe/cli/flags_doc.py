"""The README's flag table, rendered from the declarations: `python -m splitpipe.cli.flags_doc` rewrites it."""

from __future__ import annotations

import re
import sys
from collections.abc import Sequence
from pathlib import Path

from splitpipe.cli.flags import flags_of
from splitpipe.config import RunConfig
from splitpipe.options import Options

__all__ = ["flag_table", "update_readme", "START", "END"]

START, END = "<!-- flags:start -->", "<!-- flags:end -->"
README = Path(__file__).resolve().parents[2] / "README.md"


def flag_table(options: type[Options] = RunConfig) -> str:
    """One row per option: the flag, the TOML key, the default and the help (its docstring)."""
    rows = ["| flag | TOML key | default | meaning |", "| --- | --- | --- | --- |"]
    for spec in flags_of(options):
        flag = f"`{spec.flag}`" + (" LIST" if spec.is_list else "")
        default = spec.default_text() or _toml_bool(spec.field.default)
        cells = [flag, f"`{spec.name}`", f"`{default}`" if default else "", spec.help.replace("|", "\\|")]
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows) + "\n"


def _toml_bool(value: object) -> str:
    return str(value).lower() if isinstance(value, bool) else ""


def update_readme(text: str) -> str:
    """`text` with the table between START and END replaced by the rendered one."""
    pattern = re.compile(re.escape(START) + r"\n.*?" + re.escape(END), re.S)
    if not pattern.search(text):
        raise ValueError(f"README has no {START} ... {END} markers around the flag table")
    return pattern.sub(lambda _: f"{START}\n{flag_table()}{END}", text)


def main(argv: Sequence[str] | None = None) -> int:
    """Rewrite README.md's table; with --check, exit 1 (naming the fix) when it is out of date instead."""
    args = sys.argv[1:] if argv is None else list(argv)
    text = README.read_text()
    new = update_readme(text)
    if "--check" in args:
        if new != text:
            print("README.md's flag table is out of date: run python -m splitpipe.cli.flags_doc", file=sys.stderr)
            return 1
        return 0
    README.write_text(new)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
