"""Checkpoints and the saved model: resume equals an uninterrupted run, a bad file is one line."""

from pathlib import Path

import pytest
import torch

from splitpipe.checkpoint import latest_checkpoint, load_model, read_checkpoint, save_run_model
from splitpipe.config import RunConfig
from splitpipe.experiment import Checkpoints, emulate, prepare

SHAPES = {"sl": {"split": 2}, "sfl": {"split": 2}, "pipelearn": {"split": 2, "micro_batches": 2},
          "mpsl": {"cuts": (1, 2, 4), "micro_batches": 2}, "ftpipehd": {"cuts": (1, 3), "micro_batches": 2}}


def _config(name: str, epochs: int = 3) -> RunConfig:
    """320 samples per owner: 3 mini-batches of 128 an epoch, the last short (resume is exact at any size)."""
    return RunConfig(technique=name, dataset="digits", devices=2, batch_size=128, epochs=epochs, progress=False,
                     timing="profile", samples_per_device=320, **SHAPES.get(name, {}))  # type: ignore[arg-type]


class Crash(Exception):
    pass


def _crash_after(epoch: int):  # type: ignore[no-untyped-def]
    def progress(done: int, row: dict) -> None:
        if done == epoch:
            raise Crash(f"killed after epoch {epoch}")
    return progress


@pytest.mark.parametrize("name", ["fl", "sl", "sfl", "pipelearn", "mpsl", "ftpipehd"])
def test_resume_equals_an_uninterrupted_run(name: str, tmp_path: Path) -> None:
    whole = emulate(prepare(_config(name)))
    with pytest.raises(Crash):
        emulate(prepare(_config(name)), _crash_after(1), checkpoints=Checkpoints(tmp_path))
    checkpoint = read_checkpoint(latest_checkpoint(tmp_path))
    assert checkpoint.epoch == 1
    resumed = emulate(prepare(_config(name)), resume=checkpoint)
    assert whole.model is not None and resumed.model is not None
    for key, value in whole.model.state_dict().items():
        assert torch.equal(resumed.model.state_dict()[key], value), key
    assert [r["epoch"] for r in resumed.report["epochs"]] == [0, 1, 2]
    assert resumed.report["epochs"][2]["test_accuracy"] == whole.report["epochs"][2]["test_accuracy"]


@pytest.mark.parametrize("name", ["pipelearn", "mpsl"])
def test_a_resume_after_a_death_equals_an_uninterrupted_run_with_that_death(name: str, tmp_path: Path) -> None:
    dead = "device1" if name == "pipelearn" else "compute1"
    config = _config(name, epochs=2).with_(devices=3, fail=(f"{dead}@0.01",), **({"cuts": (1, 2, 3, 4)} if name == "mpsl" else {}))
    whole = emulate(prepare(config))
    events = [(e["event"], e["epoch"]) for e in whole.report["events"]]  # type: ignore[attr-defined]
    assert events == [("failure", 0), ("recovery" if name == "mpsl" else "dropout", 0)]  # MP-SL rebuilds layers
    with pytest.raises(Crash):
        emulate(prepare(config), _crash_after(0), checkpoints=Checkpoints(tmp_path))
    checkpoint = read_checkpoint(latest_checkpoint(tmp_path))
    assert checkpoint.state["dead"] == [dead]
    resumed = emulate(prepare(config), resume=checkpoint)
    assert whole.model is not None and resumed.model is not None
    for key, value in whole.model.state_dict().items():
        assert torch.equal(resumed.model.state_dict()[key], value), key
    assert [r["participants"] for r in resumed.report["epochs"]] == [r["participants"] for r in whole.report["epochs"]]
    *earlier, resume = resumed.report["events"]  # type: ignore[misc]  # the first run's events, kept
    assert earlier == whole.report["events"]
    assert resume == {"epoch": 1, "step": 0, "time_s": 0.0, "event": "resume", "nodes": [dead],
                      "checkpoint": "epoch-0000"}


def test_only_the_newest_checkpoints_are_kept(tmp_path: Path) -> None:
    emulate(prepare(_config("fl", epochs=4)), checkpoints=Checkpoints(tmp_path, every=1, keep=2))
    kept = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert kept == ["epoch-0002", "epoch-0003"]


def test_a_truncated_checkpoint_is_refused_naming_the_file(tmp_path: Path) -> None:
    emulate(prepare(_config("fl", epochs=2)), checkpoints=Checkpoints(tmp_path))
    folder = latest_checkpoint(tmp_path)
    weights = folder / "replicas.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(ValueError, match="replicas.safetensors is corrupt or truncated") as caught:
        read_checkpoint(folder)
    assert len(str(caught.value).splitlines()) == 1


def test_a_checkpoint_of_another_run_is_refused(tmp_path: Path) -> None:
    with pytest.raises(Crash):
        emulate(prepare(_config("sfl")), _crash_after(0), checkpoints=Checkpoints(tmp_path))
    checkpoint = read_checkpoint(latest_checkpoint(tmp_path))
    with pytest.raises(ValueError, match="technique 'sfl', this run's 'pipelearn'"):
        emulate(prepare(_config("pipelearn")), resume=checkpoint)


def test_no_checkpoint_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no checkpoint to resume from"):
        latest_checkpoint(tmp_path)


def test_the_saved_model_loads_back_as_the_zoo_model(tmp_path: Path) -> None:
    setup = prepare(_config("pipelearn", epochs=1))
    result = emulate(setup)
    assert result.model is not None
    path = save_run_model(tmp_path, setup, result.model)
    loaded = load_model(path)
    x = setup.dataset.x_test[:16]
    torch.testing.assert_close(loaded(x), result.model(x))
    path.write_bytes(b"not a safetensors file")
    with pytest.raises(ValueError, match="model.safetensors is corrupt"):
        load_model(path)
