"""Dial-out devices: a launched run where no device or data owner listens, and the rule that picks them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from splitpipe.cli import main
from splitpipe.config import RunConfig
from splitpipe.runtime import launcher
from splitpipe.runtime.dialout import check_dial_out, dials_out
from splitpipe.setup import prepare


def test_a_launched_run_in_which_no_device_listens(tmp_path: Path, tiny_npz: str, monkeypatch, capfd) -> None:
    listens: dict[str, str | None] = {}
    start = launcher._Cluster.start

    def spy(self: launcher._Cluster, name: str, config: RunConfig, **node: object) -> launcher._Child:
        listens[name] = node.get("listen")   # type: ignore[assignment]
        return start(self, name, config, **node)

    monkeypatch.setattr(launcher._Cluster, "start", spy)
    config = RunConfig(technique="pipelearn", dataset=f"npz:{tiny_npz}", devices=2, network="none", epochs=1,
                       batch_size=16, micro_batches=4, progress=False)
    path, out = tmp_path / "run.toml", tmp_path / "out"
    path.write_text(config.to_toml())
    assert main(["launch", str(path), "--out", str(out), "--no-progress", "--threads", "1", "--timeout", "60"]) == 0
    assert listens == {"server": "127.0.0.1:0", "device0": None, "device1": None}
    log = capfd.readouterr().err
    for device in ("device0", "device1"):
        assert f"{device}: dials out, listens nowhere" in log
        assert f"{device}: listening" not in log
    report = json.loads((out / "report.json").read_text())
    assert len(report["epochs"]) == 1 and report["engine"] == "distributed"


def test_data_owners_dial_out_and_the_coordinator_listens(tiny_npz: str) -> None:
    for technique, listening in (("pipelearn", {"server"}), ("mpsl", {"aggregator", "compute0", "compute1"}),
                                 ("ftpipehd", {"central", "worker1", "worker2"})):
        setup = prepare(RunConfig(technique=technique, dataset=f"npz:{tiny_npz}", devices=3, network="none",
                                  epochs=1, batch_size=16, progress=False))
        names = set(setup.topology.names)
        dialling = {n for n in names if dials_out(setup.plan, n)}
        assert names - dialling >= listening, technique
        check_dial_out(setup.plan, dialling)   # no link between two nodes that both dial out
    with pytest.raises(ValueError, match="neither listens; give one of them --listen"):
        check_dial_out(setup.plan, names)
