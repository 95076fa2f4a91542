"""What follows a run epoch by epoch: a progress bar (on stderr, only when it is a terminal or
asked for) and, with --tensorboard, TensorBoard scalars."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from tqdm import tqdm

from splitpipe.config import RunConfig

__all__ = ["epoch_bar", "epoch_progress"]

Progress = Callable[[int, dict[str, object]], None]


@contextmanager
def epoch_bar(total: int, label: str, enabled: bool = True) -> Iterator[Progress]:
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
