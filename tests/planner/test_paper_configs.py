"""The papers' settings (configs/papers/*.toml) load and run, shortened: 2 owners of 8 synthetic
CIFAR-sized samples in one mini-batch, 1 epoch, profile timing from an invented profile of the same model."""

import json
from pathlib import Path

import pytest

from splitpipe.cli import main
from splitpipe.config import RunConfig, load_toml

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "papers"
DATA = "synthetic:train_size=64,test_size=8"


@pytest.mark.parametrize("name", ["pipelearn", "mpsl", "ftpipehd"])
def test_paper_config_runs_shortened(name: str, tmp_path: Path, profile_file) -> None:
    path = CONFIGS / f"{name}.toml"
    config = RunConfig(**load_toml(path))
    assert config.technique == name
    if name == "mpsl":
        assert config.weight_decay == 1e-4 and config.micro_batches == 1
    out = tmp_path / "run"
    code = main(["run", str(path), "--dataset", DATA, "--samples-per-device", "8", "--epochs", "1",
                 "--batch-size", "8", "--micro-batches", str(min(config.micro_batches, 8)),
                 "--timing", "profile", "--profile", str(profile_file(config.model, DATA)), "--no-progress",
                 "--out", str(out), *(["--devices", "2"] if config.devices > 1 else [])])
    assert code == 0
    report = json.loads((out / "report.json").read_text())
    assert len(report["epochs"]) == 1 and report["epochs"][0]["time_s"] > 0


def test_samples_per_device_cuts_every_shard() -> None:
    from splitpipe.setup import prepare

    setup = prepare(RunConfig(dataset="digits", devices=3, samples_per_device=10, batch_size=8, micro_batches=2))
    assert setup.plan.shard_sizes == (10, 10, 10) and [len(s) for s in setup.shards] == [10, 10, 10]


def test_reproduction_grid_has_a_committed_profile_per_model() -> None:
    """bench/reproduce.py's grid (the issue's VGG-5, ResNet-18 and MobileNetV3-Small for PipeLearn; VGG-19 and
    ResNet-101 for MP-SL) predicts from configs/papers/profiles/: each one there, of as many units as the model."""
    import sys

    from splitpipe.models import build_model
    from splitpipe.profile import Profile

    sys.path.insert(0, str(CONFIGS.parents[1] / "bench"))
    try:
        import reproduce
    finally:
        sys.path.pop(0)
    models = reproduce.grid(quick=False, only=None)
    assert set(models["pipelearn"]) == {"vgg5", "resnet18", "mobilenet_v3_small"}
    assert set(models["mpsl"]) == {"vgg19", "resnet101"}
    assert reproduce.grid(quick=True, only={"mobilenet_v3_small"})["pipelearn"] == ["mobilenet_v3_small"]
    for model in {m for names in models.values() for m in names}:
        profile = Profile.load(CONFIGS / "profiles" / f"{model}.json")
        assert len(profile.units) == len(build_model(model, 3, 32, 10)), model
