"""A progress bar over epochs (on stderr, only when it is a terminal or asked for)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from tqdm import tqdm

__all__ = ["epoch_bar"]


@contextmanager
def epoch_bar(total: int, label: str, enabled: bool = True) -> Iterator[Callable[[int, dict[str, object]], None]]:
    bar = tqdm(total=total, desc=label, unit="epoch", disable=None if enabled else True, leave=True)

    def update(epoch: int, row: dict[str, object]) -> None:
        bar.set_postfix(time=f"{row['time_s']:.3g}s", acc=f"{row['test_accuracy']:.3f}", loss=f"{row['train_loss']:.3f}")
        bar.update(1)

    try:
        yield update
    finally:
        bar.close()
