"""The CLI: bad input gives one line naming the value; run and compare write their files."""

import json
from pathlib import Path

import numpy as np
import pytest

from splitpipe.cli import main

BAD_INPUT = [
    (["--model", "vgg6"], "vgg6"),
    (["--dataset", "imagenet"], "imagenet"),
    (["--network", "5g"], "5g"),
    (["--split", "9"], "split 9"),
    (["--batch-size", "8", "--micro-batches", "9"], "micro-batches 9"),
    (["--network=-5/25/30"], "-5"),
    (["--epochs", "many"], "many"),
    (["--dataset", "npz:/no/such/file.npz"], "/no/such/file.npz"),
    (["--technique", "gossip"], "gossip"),
    (["--device-speed", "0"], "device-speed"),
    (["--technique", "ftpipehd", "--speed-change", "worker1@3"], "worker1@3"),
    (["--technique", "ftpipehd", "--speed-change", "worker9@3=0.5"], "worker9"),
]


@pytest.mark.parametrize(("flags", "named"), BAD_INPUT)
def test_bad_input_exits_nonzero_with_one_line_naming_it(flags: list[str], named: str, capsys) -> None:
    try:
        code = main(["run", "--epochs", "1", "--no-progress", *flags])
    except SystemExit as exit_:  # argparse's own errors
        code = exit_.code
    err = capsys.readouterr().err.strip()
    assert code != 0
    assert len(err.splitlines()) == 1, err
    assert named in err


def test_run_writes_report_metrics_and_timeline(tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    code = main(["run", "--technique", "pipelearn", "--epochs", "1", "--devices", "2", "--no-progress",
                 "--samples-per-device", "128", "--out", str(out)])  # 4 steps an epoch: the files, not the training
    assert code == 0
    report = json.loads((out / "report.json").read_text())
    for key in ("technique", "engine", "timing", "model", "dataset", "devices", "network", "plan", "epochs"):
        assert key in report
    row = report["epochs"][0]
    for key in ("epoch", "time_s", "busy_s", "idle_s", "bytes", "throughput_Bps", "bound_s", "efficiency",
                "train_loss", "test_accuracy"):
        assert key in row
    assert report["engine"] == "emulate" and report["plan"]["micro_batches"] == 4
    assert 0 < row["efficiency"] <= 1
    assert (out / "metrics.csv").read_text().startswith("epoch,")
    assert (out / "timeline.png").read_bytes()[:4] == b"\x89PNG"


def test_toml_config_is_read_and_flags_override_it(tmp_path: Path) -> None:
    config = tmp_path / "run.toml"
    config.write_text('technique = "sfl"\nmicro_batches = 2\ndevices = 2\nepochs = 3\n')
    out = tmp_path / "out"
    assert main(["run", str(config), "--epochs", "1", "--no-progress", "--out", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["technique"] == "sfl" and len(report["epochs"]) == 1 and report["devices"] == 2


def test_unknown_toml_key_is_named(tmp_path: Path, capsys) -> None:
    config = tmp_path / "run.toml"
    config.write_text("micro_batchez = 2\n")
    assert main(["run", str(config)]) == 2
    assert "micro_batchez" in capsys.readouterr().err


def test_compare_writes_a_folder_per_technique_and_the_comparison(tmp_path: Path, capsys) -> None:
    out = tmp_path / "cmp"
    code = main(["compare", "--techniques", "fl,pipelearn", "--epochs", "1", "--devices", "2",
                 "--no-progress", "--out", str(out)])
    assert code == 0
    for technique in ("fl", "pipelearn"):
        assert (out / technique / "report.json").is_file()
    lines = (out / "compare.csv").read_text().splitlines()
    assert lines[0].startswith("technique,") and len(lines) == 3
    assert (out / "compare.png").stat().st_size > 0
    assert "pipelearn" in capsys.readouterr().out


def test_npz_dataset_trains(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    path = tmp_path / "d.npz"
    np.savez(path, x=rng.integers(0, 255, (80, 8, 8, 1), dtype=np.uint8), y=rng.integers(0, 3, 80))
    assert main(["run", "--dataset", f"npz:{path}", "--epochs", "1", "--devices", "2", "--no-progress"]) == 0


def test_a_target_accuracy_outside_0_1_is_named_before_training(capsys) -> None:
    assert main(["compare", "--target-accuracy", "90", "--epochs", "1", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--target-accuracy must be <= 1" in err and "got 90" in err
