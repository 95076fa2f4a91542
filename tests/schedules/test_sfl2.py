"""SplitFed v2: one shared server part trained batch by batch, device parts averaged; it trains
digits with run, compare, plan and launch like every other technique."""

import json
from pathlib import Path

import torch

from splitpipe.cli import main
from splitpipe.config import RunConfig
from splitpipe.experiment import emulate, prepare
from splitpipe.schedules import build_schedule

DIGITS = dict(technique="sfl2", dataset="digits", devices=3, batch_size=32, epochs=3, progress=False)


def test_sfl2_trains_digits_to_90_percent_and_the_server_takes_one_batch_at_a_time() -> None:
    result = emulate(prepare(RunConfig(**DIGITS)))  # type: ignore[arg-type]
    assert result.report["epochs"][-1]["test_accuracy"] >= 0.9
    server = sorted((s for s in result.spans if s.resource == "server" and s.category != "aggregate"),
                    key=lambda s: (s.epoch, s.start))
    runs = [(s.owner, s.category) for s in server]
    for i in range(0, len(runs), 3):  # forward, backward, step of one batch, never interleaved
        owner = runs[i][0]
        assert runs[i:i + 3] == [(owner, "forward"), (owner, "backward"), (owner, "step")], runs[i:i + 6]
    assert len({owner for owner, _ in runs}) == 3


def test_with_one_device_sfl2_is_sfl() -> None:
    one = dict(DIGITS, devices=1, epochs=1)
    v2 = emulate(prepare(RunConfig(**one))).model  # type: ignore[arg-type]
    v1 = emulate(prepare(RunConfig(**dict(one, technique="sfl")))).model  # type: ignore[arg-type]
    assert v1 is not None and v2 is not None
    for key, value in v1.state_dict().items():
        torch.testing.assert_close(v2.state_dict()[key], value, msg=key)


def test_one_server_replica_serves_every_device() -> None:
    setup = prepare(RunConfig(**DIGITS))  # type: ignore[arg-type]
    schedule = build_schedule(setup.plan, 0)
    assert [r for r in schedule.replicas if r.node == "server"] == [type(schedule.replicas[0])("server", 1, 0)]
    assert sorted(schedule.programs["server"]) == [-1, 0, 1, 2]


def test_compare_and_plan_take_sfl2(tmp_path: Path, capsys) -> None:
    flags = ["--devices", "2", "--epochs", "1", "--batch-size", "64", "--no-progress"]
    assert main(["compare", "--techniques", "sfl,sfl2", *flags, "--out", str(tmp_path)]) == 0
    assert "sfl2" in capsys.readouterr().out
    report = json.loads((tmp_path / "sfl2" / "report.json").read_text())
    assert report["technique"] == "sfl2" and report["epochs"][0]["test_accuracy"] > 0.5
    assert main(["plan", "--technique", "sfl2", "--devices", "2", "--batch-size", "32", "--dataset", "synthetic",
                 "--device-speed", "0.1,0.5", "--epochs", "1", "--no-progress"]) == 0
    assert "sfl2: split" in capsys.readouterr().out


def test_launch_trains_sfl2_on_digits_to_90_percent(tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert main(["launch", "--technique", "sfl2", "--dataset", "digits", "--devices", "2", "--epochs", "2",
                 "--batch-size", "32", "--network", "none", "--threads", "1", "--timeout", "120", "--no-progress",
                 "--processes", "2", "--out", str(out)]) == 0   # the server's process and the devices' one
    report = json.loads((out / "report.json").read_text())
    assert report["engine"] == "distributed" and report["epochs"][-1]["test_accuracy"] >= 0.9
