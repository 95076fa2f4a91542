"""What run, node and launch print at the end of a run, and the files they write."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from splitpipe.report import format_table, summarize, write_run
from splitpipe.span import Span

__all__ = ["EPOCH_COLUMNS", "show_run"]

EPOCH_COLUMNS = ["epoch", "time_s", "predicted_time_s", "bound_s", "efficiency", "throughput_Bps", "train_loss",
                 "test_accuracy"]


def show_run(report: dict[str, Any], spans: Sequence[Span], out: str | None, how: str) -> None:
    """An epoch table, a one-line summary (`how` says which clock), and the report files in `out`."""
    epochs = report["epochs"]
    columns = [c for c in EPOCH_COLUMNS if any(c in e for e in epochs)]
    print(format_table(epochs, columns))
    s = summarize(report)
    print(f"{report['technique']}: {s['epoch_time_s']:.4g} s per epoch ({how}), "
          f"efficiency {s['efficiency']:.3f}, test accuracy {s['test_accuracy']:.3f}")
    if out:
        for path in write_run(out, report, spans):
            print(f"wrote {path}")
