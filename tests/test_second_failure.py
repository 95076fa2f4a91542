"""A second failure while a segment is redone after the first: rewound again, re-planned without both."""

from __future__ import annotations

from pathlib import Path

import torch

from splitpipe.config import RunConfig
from splitpipe.experiment import emulate, prepare

PROFILE = str(Path(__file__).parent / "golden_reports" / "profile_vgg5_digits.json")
CONFIG = RunConfig(technique="pipelearn", dataset="digits", devices=4, batch_size=16, micro_batches=2, epochs=2,
                   samples_per_device=64, progress=False, timing="profile", profile=PROFILE)


def test_a_failure_during_the_redo_ends_as_if_both_had_died_at_once() -> None:
    epoch_s = emulate(prepare(CONFIG.with_(epochs=1))).report["epochs"][0]["time_s"]  # type: ignore[index]
    first, second = 1.2 * epoch_s, 1.2 * epoch_s + 0.5 * epoch_s  # in epoch 1; the second within its redo
    result = emulate(prepare(CONFIG.with_(fail=(f"device1@{first}", f"device2@{second}"))))
    events = result.report["events"]
    assert [(e["event"], e["nodes"], e["epoch"]) for e in events] == [  # type: ignore[union-attr]
        ("failure", ["device1"], 1), ("dropout", ["device1"], 1), ("failure", ["device2"], 1), ("dropout", ["device2"], 1)]
    assert events[2]["time_s"] > events[0]["time_s"]  # type: ignore[index]
    assert result.report["epochs"][1]["participants"] == ["device0", "device3"]  # type: ignore[index]
    both = emulate(prepare(CONFIG.with_(fail=(f"device1@{first}", f"device2@{first}"))))
    assert result.model is not None and both.model is not None
    for key, value in both.model.state_dict().items():
        assert torch.equal(result.model.state_dict()[key], value), key
