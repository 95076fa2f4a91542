"""TensorBoard scalars per epoch, fed by the progress callback: watch runs live and overlay them.

Behind the same `progress(epoch, row)` callback as the progress bar, so the emulator and the
real coordinator log alike. TensorBoard is an optional extra (`splitpipe[tensorboard]`); it
is imported only when a log is opened. The writer is torch's own `SummaryWriter`, which needs
the `tensorboard` package and nothing more (no second torch).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType

__all__: list[str] = []

#: Scalar tag -> key of the epoch row (see loop.epoch_row).
SCALARS = {
    "loss/train": "train_loss",
    "accuracy/test": "test_accuracy",
    "time/epoch_s": "time_s",
    "time/predicted_epoch_s": "predicted_time_s",
    "efficiency": "efficiency",
}


class TensorBoardLog:
    """Scalars of each epoch under `log_dir`, step = epoch: the SCALARS, the mean idle time of
    the nodes (`time/idle_mean_s`) and each node's own (`idle_s/<node>`)."""

    def __init__(self, log_dir: str | Path) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as exc:
            raise ValueError(f"--tensorboard {log_dir} needs the tensorboard package "
                             f"(pip install 'splitpipe[tensorboard]'): {exc}") from None
        self.log_dir = Path(log_dir)
        self._writer = SummaryWriter(log_dir=str(self.log_dir))

    def __call__(self, epoch: int, row: Mapping[str, object]) -> None:
        for tag, key in SCALARS.items():
            self._scalar(tag, row.get(key), epoch)
        idle = row.get("idle_s")
        if isinstance(idle, Mapping) and idle:
            for node, seconds in sorted(idle.items()):
                self._scalar(f"idle_s/{node}", seconds, epoch)
            self._scalar("time/idle_mean_s", sum(idle.values()) / len(idle), epoch)
        self._writer.flush()

    def _scalar(self, tag: str, value: object, epoch: int) -> None:
        """Numbers only: a missing or NaN value (no test set, no prediction) is left out."""
        if isinstance(value, numbers.Real) and not isinstance(value, bool) and not math.isnan(value):
            self._writer.add_scalar(tag, float(value), global_step=epoch)

    def close(self) -> None:
        self._writer.close()

    def __enter__(self) -> TensorBoardLog:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.close()
