"""The CLI keeps what a run produced: the trained model, checkpoints, and --resume from them."""

import json
from pathlib import Path

import pytest
import torch

from splitpipe.checkpoint import load_model
from splitpipe.cli import main

FLAGS = ["--technique", "sfl", "--devices", "2", "--batch-size", "128", "--timing", "profile", "--no-progress"]


def test_run_writes_the_model_and_resume_trains_on_to_the_same_weights(tmp_path: Path) -> None:
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    assert main(["run", *FLAGS, "--epochs", "3", "--out", str(whole)]) == 0
    assert main(["run", *FLAGS, "--epochs", "2", "--out", str(cut)]) == 0
    assert sorted(p.name for p in (cut / "checkpoints").iterdir()) == ["epoch-0000", "epoch-0001"]
    assert main(["run", "--resume", str(cut), "--epochs", "3", "--no-progress"]) == 0
    report = json.loads((cut / "report.json").read_text())
    assert [e["epoch"] for e in report["epochs"]] == [0, 1, 2]
    a, b = load_model(whole / "model.safetensors"), load_model(cut / "model.safetensors")
    for key, value in a.state_dict().items():
        assert torch.equal(b.state_dict()[key], value), key


def test_checkpoint_every_zero_writes_none(tmp_path: Path) -> None:
    assert main(["run", *FLAGS, "--epochs", "1", "--checkpoint-every", "0", "--out", str(tmp_path)]) == 0
    assert not (tmp_path / "checkpoints").exists() and (tmp_path / "model.safetensors").is_file()


@pytest.mark.parametrize("case", ["out under a file", "resume without checkpoints"])
def test_bad_out_or_resume_is_one_line_before_training(case: str, tmp_path: Path, capsys) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    argv = (["run", *FLAGS, "--epochs", "1", "--out", str(blocker / "sub")] if case == "out under a file"
            else ["run", "--resume", str(tmp_path), "--no-progress"])
    assert main(argv) != 0
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and ("cannot hold" in err or "no checkpoint" in err), err


def test_a_run_that_cannot_go_on_is_one_line_and_keeps_its_checkpoints(tmp_path: Path, capsys) -> None:
    code = main(["run", *FLAGS, "--epochs", "3", "--fail", "server@0.0001", "--out", str(tmp_path)])
    err = capsys.readouterr().err.strip()
    assert code == 1 and len(err.splitlines()) == 1 and "server failed" in err, err


def test_a_stuck_schedule_is_one_line(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    from splitpipe import experiment
    from splitpipe.engine.events import ScheduleStuck

    def stuck(*args: object, **kwargs: object) -> None:
        raise ScheduleStuck("schedule is not progressing: 2 lanes blocked\n  server lane 0: waits at #3 R ...")

    monkeypatch.setattr(experiment, "emulate", stuck)
    assert main(["run", *FLAGS, "--epochs", "1"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.splitlines() == [err] and "schedule is not progressing: 2 lanes blocked" in err
