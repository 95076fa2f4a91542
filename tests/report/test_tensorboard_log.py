"""--tensorboard: the scalars of each epoch land in an event file TensorBoard reads back."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

pytest.importorskip("tensorboard")

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402

from splitpipe.report.tensorboard_log import TensorBoardLog  # noqa: E402


def _row(epoch: int) -> dict[str, object]:
    return {"epoch": epoch, "time_s": 2.0 + epoch, "efficiency": 0.5, "train_loss": 1.0 / (epoch + 1),
            "test_accuracy": math.nan if epoch == 0 else 0.8, "idle_s": {"server": 1.0, "device0": 0.5}}


def test_each_epoch_logs_loss_accuracy_time_idle_and_efficiency(tmp_path: Path) -> None:
    with TensorBoardLog(tmp_path / "tb") as log:
        for epoch in range(3):
            log(epoch, _row(epoch))
    events = EventAccumulator(str(tmp_path / "tb"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert tags == {"loss/train", "accuracy/test", "time/epoch_s", "efficiency", "time/idle_mean_s",
                    "idle_s/server", "idle_s/device0"}
    assert [(s.step, s.value) for s in events.Scalars("time/epoch_s")] == [(0, 2.0), (1, 3.0), (2, 4.0)]
    assert [s.step for s in events.Scalars("accuracy/test")] == [1, 2]  # NaN is left out
    assert [s.value for s in events.Scalars("time/idle_mean_s")] == [0.75] * 3


def test_the_run_command_logs_through_the_progress_callback(tmp_path: Path) -> None:
    from splitpipe.cli import main

    profile = str(Path(__file__).parents[1] / "golden_reports" / "profile_vgg5_digits.json")
    assert main(["run", "--technique", "sl", "--dataset", "digits", "--devices", "2", "--epochs", "2",
                 "--batch-size", "256", "--timing", "profile", "--profile", profile, "--no-progress",
                 "--tensorboard", str(tmp_path / "tb")]) == 0
    events = EventAccumulator(str(tmp_path / "tb"))
    events.Reload()
    assert [s.step for s in events.Scalars("loss/train")] == [0, 1]
