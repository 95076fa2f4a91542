"""splitpipe profile, plan and run: the plan's TOML runs, and run's prediction is the plan's."""

import json
from pathlib import Path

import pytest

from splitpipe.cli import main
from splitpipe.config import RunConfig, load_toml
from splitpipe.profile import Profile

DATA = "synthetic:channels=1,image_size=8,train_size=96,test_size=16"
COMMON = ["--dataset", DATA, "--devices", "3", "--batch-size", "8", "--device-speed", "0.1,0.4,1",
          "--network", "4g,wifi,4g+"]


def predicted_line(text: str) -> float:
    line = next(ln for ln in text.splitlines() if ln.startswith("predicted epoch time"))
    return float(line.split()[3])


def test_plan_writes_a_config_that_run_accepts_and_predicts_the_same(tmp_path: Path, profile_file, capsys) -> None:
    profile = profile_file("vgg5", DATA)
    out = tmp_path / "plan.toml"
    assert main(["plan", *COMMON, "--profile", str(profile), "--out", str(out)]) == 0
    predicted = predicted_line(capsys.readouterr().out)
    raw = load_toml(out)
    config = RunConfig(**raw)
    assert config.technique == "pipelearn" and config.profile == str(profile)
    run_dir = tmp_path / "run"
    assert main(["run", str(out), "--epochs", "1", "--timing", "profile", "--no-progress", "--out", str(run_dir)]) == 0
    row = json.loads((run_dir / "report.json").read_text())["epochs"][0]
    assert row["predicted_time_s"] == pytest.approx(row["time_s"], rel=1e-12)
    assert row["time_s"] == pytest.approx(predicted, rel=1e-3)  # the plan printed 4 digits


@pytest.mark.parametrize("technique", ["mpsl", "ftpipehd"])
def test_multihop_plans_write_cuts(technique: str, tmp_path: Path, profile_file, capsys) -> None:
    out = tmp_path / "plan.toml"
    flags = ["--compute-nodes", "2"] if technique == "mpsl" else ["--stage-speeds", "1,0.3,2", "--network", "wifi"]
    code = main(["plan", "--technique", technique, "--dataset", DATA, "--devices", "2", "--batch-size", "8",
                 "--profile", str(profile_file("vgg5", DATA)), *flags, "--out", str(out)])
    assert code == 0
    text = capsys.readouterr().out
    assert ("HiGHS" in text) == (technique == "mpsl")
    config = RunConfig(**load_toml(out))
    assert config.technique == technique and len(config.cut_points()) == (3 if technique == "mpsl" else 2)


@pytest.mark.parametrize(("flags", "named"), [
    (["--technique", "mpsl", "--compute-nodes", "2", "--memory-limit", "1kB"], "memory limits infeasible: compute0"),
    (["--technique", "mpsl", "--memory-limit", "lots"], "lots"),
    (["--technique", "mpsl", "--compute-nodes", "2", "--memory-limit", "1GB,1GB,1GB"], "3 values for 2"),
    (["--technique", "pipelearn", "--memory-limit", "1GB"], "memory-limit applies to mpsl and ftpipehd"),
    (["--technique", "fl"], "nothing to plan for fl"),
    (["--micro-batch-choices", "1,99"], "[99]"),
    (["--technique", "mpsl", "--compute-speeds", "1,2", "--compute-prices", "1,2"], "a deadline needs prices"),
    (["--technique", "mpsl", "--compute-speeds", "1,2", "--compute-prices", "1"], "compute-prices has 1 values"),
    (["--technique", "mpsl", "--compute-nodes", "3", "--compute-speeds", "1,2"], "compute speed or one per compute"),
    (["--technique", "mpsl", "--compute-speeds", "1,2", "--compute-prices", "1,2", "--deadline", "1e-6"],
     "deadline 1e-06 s cannot be met: the fastest"),
    (["--technique", "pipelearn", "--compute-prices", "1", "--deadline", "1"], "apply to mpsl, not pipelearn"),
])
def test_bad_plan_input_is_one_line(flags: list[str], named: str, profile_file, capsys) -> None:
    code = main(["plan", "--dataset", DATA, "--devices", "2", "--batch-size", "8",
                 "--profile", str(profile_file("vgg5", DATA)), *flags])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err
    assert named in err


def test_profile_measures_every_micro_batch_size(tmp_path: Path, capsys) -> None:
    out = tmp_path / "p.json"
    code = main(["profile", "--model", "vgg5", "--dataset", DATA, "--batch-size", "8", "--repeats", "1",
                 "--warmup", "0", "--speed", "2", "--out", str(out)])
    assert code == 0
    profile = Profile.load(out)
    assert len(profile.units) == 5 and sorted(profile.units[0].forward_s) == [2, 4, 8]
    assert profile.meta["speed"] == 2 and profile.units[0].output_bytes == 32 * 4 * 4 * 4
    assert {"F", "B", "U", "W", "A", "L"} <= set(profile.calibration)  # fitted by a short training run
    assert "wrote" in capsys.readouterr().out


@pytest.mark.parametrize(("flags", "shown"), [
    (["--technique", "mpsl", "--compute-nodes", "2", "--estimator", "closed-form"], "closed-form (the paper's cost model)"),
    (["--method", "paper"], "search's choice: split"),
])
def test_plan_shows_the_papers_rule_and_cost_model(flags: list[str], shown: str, profile_file, capsys) -> None:
    code = main(["plan", "--dataset", DATA, "--devices", "2", "--batch-size", "8",
                 "--profile", str(profile_file("vgg5", DATA)), *flags])
    assert code == 0 and shown in capsys.readouterr().out


def test_heterogeneous_compute_nodes_plan_any_order_and_run(tmp_path: Path, profile_file, capsys) -> None:
    out = tmp_path / "plan.toml"
    code = main(["plan", "--technique", "mpsl", "--dataset", DATA, "--devices", "2", "--batch-size", "8",
                 "--profile", str(profile_file("vgg5", DATA)), "--compute-speeds", "0.2,1,3",
                 "--compute-memory", "1GB,1GB,2GB", "--out", str(out)])
    assert code == 0 and "assignment ILP (fastest" in capsys.readouterr().out
    config = RunConfig(**load_toml(out))
    assert sorted(config.compute_speeds) == [0.2, 1.0, 3.0] and len(config.cut_points()) == 4
    assert main(["run", str(out), "--epochs", "1", "--timing", "profile", "--no-progress",
                 "--out", str(tmp_path / "run")]) == 0
