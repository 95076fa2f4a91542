"""What run, compare, node, launch and show print at the end of a run, and the files they write."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from splitpipe.report import format_table, summarize, write_run
from splitpipe.report.files import compare_rows
from splitpipe.span import Span

__all__ = ["EPOCH_COLUMNS", "COMPARE_COLUMNS", "show_run", "print_run", "print_compare", "clock_of"]

EPOCH_COLUMNS = ["epoch", "time_s", "predicted_time_s", "bound_s", "efficiency", "throughput_Bps", "train_loss",
                 "test_accuracy"]
COMPARE_COLUMNS = ["technique", "epoch_time_s", "server_idle_s", "device_idle_s", "throughput_Bps", "efficiency",
                   "test_accuracy"]


def show_run(report: dict[str, Any], spans: Sequence[Span], out: str | None, how: str) -> None:
    """An epoch table, a one-line summary (`how` says which clock), and the report files in `out`."""
    print_run(report, how)
    if out:
        for path in write_run(out, report, spans):
            print(f"wrote {path}")


def print_run(report: Mapping[str, Any], how: str) -> None:
    """The epoch table and the one-line summary of a run."""
    epochs = report["epochs"]
    columns = [c for c in EPOCH_COLUMNS if any(c in e for e in epochs)]
    print(format_table(epochs, columns))
    s = summarize(dict(report))
    print(f"{report['technique']}: {s['epoch_time_s']:.4g} s per epoch ({how}), "
          f"efficiency {s['efficiency']:.3f}, test accuracy {s['test_accuracy']:.3f}")


def clock_of(report: Mapping[str, Any]) -> str:
    """Which clock a report's times are on, as the summary line says it."""
    if report.get("engine") == "distributed":
        return "distributed, wall clock"
    return f"emulated, {report.get('timing', '?')} timing"


def print_compare(reports: Mapping[str, dict[str, Any]], target: float | None = None) -> None:
    """One row per technique; with a target accuracy, the time each took to reach it."""
    rows = compare_rows(reports, target)
    columns = COMPARE_COLUMNS + (["time_to_accuracy_s"] if target is not None else [])
    print(format_table([{"technique": t, **row} for t, row in rows.items()], columns))
    if target is not None:
        print(f"time_to_accuracy_s: run time until test accuracy >= {target:g} (- if never)")
