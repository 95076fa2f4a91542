"""A manual cluster as `splitpipe node` runs it (run_node), with per-node keys from `splitpipe keys`: each
node in a thread here, over real gRPC, devices listening on all interfaces without --advertise."""

from __future__ import annotations

import json
import queue
import shutil
import threading
from pathlib import Path

import pytest

from splitpipe.cli import main
from splitpipe.config import RunConfig
from splitpipe.runtime.entry import run_node
from splitpipe.runtime.options import NodeOptions
from splitpipe.runtime.transport.identity import make_keys


def test_nodes_with_their_own_keys_run_a_whole_run(tmp_path: Path, tiny_npz: str) -> None:
    config = RunConfig(technique="pipelearn", dataset=f"npz:{tiny_npz}", devices=2, network="none", epochs=1,
                       batch_size=16, micro_batches=4, progress=False, round_deadline=60.0)  # every owner meets it
    make_keys(["server", "device0", "device1"], tmp_path / "keys")
    ports: queue.Queue[int] = queue.Queue()
    codes: dict[str, int] = {}

    def node(name: str, **options: object) -> threading.Thread:
        def run() -> None:
            codes[name] = run_node(NodeOptions(keys=str(tmp_path / "keys"), timeout=60, **options),  # type: ignore[arg-type]
                                   port_out=ports.put)
        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        return thread

    threads = [node("server", role="server", listen="127.0.0.1:0", config=config.with_(out=str(tmp_path / "out")))]
    coordinator = f"127.0.0.1:{ports.get(timeout=60)}"
    threads += [node(f"device{i}", role="device", id=i, listen="0.0.0.0:0", coordinator=coordinator, config=config)
                for i in range(2)]
    for thread in threads:
        thread.join(120)
    assert codes == {"server": 0, "device0": 0, "device1": 0}
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["engine"] == "distributed" and len(report["epochs"]) == 1
    assert report["epochs"][0]["participants"] == ["device0", "device1"] and "events" not in report


def test_node_key_errors_are_one_line(tmp_path: Path, tiny_npz: str, capsys: pytest.CaptureFixture[str]) -> None:
    config = RunConfig(technique="pipelearn", dataset=f"npz:{tiny_npz}", devices=2, network="none", epochs=1,
                       batch_size=16, micro_batches=4, progress=False)
    (tmp_path / "run.toml").write_text(config.to_toml())
    make_keys(["server", "device0"], tmp_path / "keys")
    shutil.copy(tmp_path / "keys" / "public.json", tmp_path / "public-only")
    base = ["node", "--config", str(tmp_path / "run.toml"), "--listen", "127.0.0.1:0", "--coordinator", "127.0.0.1:9"]
    assert main([*base, "--role", "device", "--id", "1", "--keys", str(tmp_path / "keys")]) == 2
    assert f"cannot read the keys of node 'device1' in {tmp_path / 'keys'}" in capsys.readouterr().err
    assert main([*base, "--role", "device", "--keys", str(tmp_path / "keys"), "--secret-file", "s"]) == 2
    assert "give --keys (per-node identity) or --secret-file (a shared secret), not both" in capsys.readouterr().err
