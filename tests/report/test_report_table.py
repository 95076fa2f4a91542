"""Plain-text tables."""

from __future__ import annotations

import math

import pytest

from splitpipe.report import format_table


def test_columns_align_and_lines_share_one_width() -> None:
    rows = [
        {"technique": "pipelearn", "epoch_time_s": 12.3456789, "epochs": 3},
        {"technique": "sl", "epoch_time_s": 0.000123456, "epochs": 10},
    ]
    lines = format_table(rows, ["technique", "epoch_time_s", "epochs"]).splitlines()
    assert len(lines) == 4
    assert len({len(line) for line in lines}) == 1
    assert set(lines[1]) == {"-", " "}
    assert lines[2].split() == ["pipelearn", "12.35", "3"]
    assert lines[3].split() == ["sl", "0.0001235", "10"]
    # Numbers are right-aligned: their last digits sit in the same column.
    assert lines[2].rstrip().endswith(" 3") and lines[3].endswith("10")
    assert lines[2].index("12.35") + len("12.35") == lines[3].index("0.0001235") + len(
        "0.0001235"
    )


def test_missing_values_print_as_dash() -> None:
    rows = [
        {"name": "fl", "server_idle_s": math.nan},
        {"name": "sfl", "server_idle_s": None},
        {},
    ]
    lines = format_table(rows, ["name", "server_idle_s"]).splitlines()
    assert [line.split()[-1] for line in lines[2:]] == ["-", "-", "-"]


def test_no_columns_is_an_error() -> None:
    with pytest.raises(ValueError, match="at least one column"):
        format_table([{"a": 1}], [])
