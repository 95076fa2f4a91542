"""What run, compare and a distributed run's coordinator print: a progress bar, the epoch table, the files."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from tqdm import tqdm

from splitpipe.report.files import summarize, write_run
from splitpipe.report.table import format_table
from splitpipe.span import Span

__all__ = ["EPOCH_COLUMNS", "epoch_bar", "show_run"]

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


@contextmanager
def epoch_bar(total: int, label: str, enabled: bool = True) -> Iterator[Callable[[int, dict[str, object]], None]]:
    """A progress bar over epochs on stderr, only when it is a terminal (or not at all when disabled)."""
    bar = tqdm(total=total, desc=label, unit="epoch", disable=None if enabled else True, leave=True)

    def update(epoch: int, row: dict[str, object]) -> None:
        bar.set_postfix(time=f"{row['time_s']:.3g}s", acc=f"{row['test_accuracy']:.3f}", loss=f"{row['train_loss']:.3f}")
        bar.update(1)

    try:
        yield update
    finally:
        bar.close()
