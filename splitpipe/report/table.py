"""Plain-text tables for the terminal: fixed-width columns, a header and a rule."""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence

__all__: list[str] = []

#: What a missing cell (absent key, None or NaN) prints as.
MISSING = "-"


def format_table(rows: Sequence[Mapping[str, object]], columns: Sequence[str]) -> str:
    """Lay `rows` out under `columns`, every line padded to the same width.

    Numbers are right-aligned (floats with 4 significant digits) so that their
    magnitudes line up; text is left-aligned.
    """
    if not columns:
        raise ValueError("format_table needs at least one column (got none)")
    cells = [[_cell(row.get(column)) for column in columns] for row in rows]
    numeric = [
        all(
            _is_number(row.get(column)) or _cell(row.get(column)) == MISSING
            for row in rows
        )
        and any(_is_number(row.get(column)) for row in rows)
        for column in columns
    ]
    widths = [
        max([len(column)] + [len(line[i]) for line in cells])
        for i, column in enumerate(columns)
    ]

    def render(values: Sequence[str]) -> str:
        parts = [
            value.rjust(width) if right else value.ljust(width)
            for value, width, right in zip(values, widths, numeric)
        ]
        return "  ".join(parts)

    lines = [render(list(columns)), "  ".join("-" * width for width in widths)]
    lines.extend(render(line) for line in cells)
    return "\n".join(lines)


def _is_number(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _cell(value: object) -> str:
    if value is None:
        return MISSING
    if isinstance(value, (bool, numbers.Integral)):
        return str(value)
    if isinstance(value, numbers.Real):
        number = float(value)
        return MISSING if math.isnan(number) else f"{number:.4g}"
    return str(value)
