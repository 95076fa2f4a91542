"""What run, compare, show and a distributed run's coordinator print: a progress bar (with TensorBoard
scalars when asked), the epoch table, the comparison, the files."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tqdm import tqdm

from splitpipe.report.files import compare_rows, summarize, write_run
from splitpipe.report.table import format_table
from splitpipe.span import Span

if TYPE_CHECKING:
    from splitpipe.config import RunConfig

__all__ = ["EPOCH_COLUMNS", "COMPARE_COLUMNS", "epoch_bar", "epoch_progress", "show_run", "print_run",
           "print_compare", "clock_of"]

Progress = Callable[[int, dict[str, object]], None]

COMPARE_COLUMNS = ["technique", "epoch_time_s", "server_idle_s", "device_idle_s", "throughput_Bps", "efficiency",
                   "test_accuracy"]
EPOCH_COLUMNS = ["epoch", "time_s", "predicted_time_s", "bound_s", "efficiency", "throughput_Bps", "train_loss",
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


@contextmanager
def epoch_progress(config: RunConfig, label: str, subfolder: str | None = None) -> Iterator[Progress]:
    """The bar, and TensorBoard scalars in config.tensorboard (/ `subfolder`, one per compared run)."""
    with epoch_bar(config.epochs, label, config.progress) as bar:
        if config.tensorboard is None:
            yield bar
            return
        from splitpipe.report.tensorboard_log import TensorBoardLog

        with TensorBoardLog(Path(config.tensorboard, subfolder or "")) as log:

            def both(epoch: int, row: dict[str, object]) -> None:
                bar(epoch, row)
                log(epoch, row)

            yield both
