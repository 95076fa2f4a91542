"""A finished run's folder read back (report.json, compare.csv, trace.json), to show it again later."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from splitpipe.report.accuracy import check_target
from splitpipe.report.chrome_trace import read_spans
from splitpipe.report.files import checked_epochs
from splitpipe.span import Span

__all__: list[str] = []


def read_report(folder: str | Path) -> dict[str, Any]:
    """report.json of the run in `folder`, checked for what the tables need."""
    path = Path(folder) / "report.json"
    if not path.is_file():
        raise ValueError(f"{folder} has no report.json: not the --out folder of run, launch or compare")
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path} is not valid JSON ({exc})") from None
    if not isinstance(report, dict) or "technique" not in report:
        raise ValueError(f"{path} is not a splitpipe report (no 'technique' key)")
    try:
        checked_epochs(report)
    except TypeError as exc:
        raise ValueError(f"{path}: {exc}") from None
    return report


def read_compare(folder: str | Path) -> tuple[list[str], float | None]:
    """The techniques of compare.csv in `folder`, in its order, and the target accuracy if it had one."""
    path = Path(folder) / "compare.csv"
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ValueError(f"cannot read {path} ({exc})") from None
    techniques = [row.get("technique") or "" for row in rows]
    if not techniques or not all(techniques):
        raise ValueError(f"{path} lists no techniques (expected a 'technique' column, one row each)")
    targets = {row.get("target_accuracy") or "" for row in rows} - {""}
    if len(targets) > 1:
        raise ValueError(f"{path} has several target accuracies ({', '.join(sorted(targets))}); expected one")
    if not targets:
        return techniques, None
    (text,) = targets
    try:
        return techniques, check_target(float(text))
    except ValueError:
        raise ValueError(f"{path} has a bad target_accuracy {text!r}") from None


def read_trace_spans(folder: str | Path, report: dict[str, Any]) -> list[Span] | None:
    """The spans kept in `folder`/trace.json (report.json has none), or None without a trace."""
    path = Path(folder) / "trace.json"
    return read_spans(path, report) if path.is_file() else None
