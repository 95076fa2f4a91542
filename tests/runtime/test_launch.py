"""`splitpipe launch`: real node processes over loopback gRPC; a killed device fails the launch fast."""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, cast

import pytest

from splitpipe.cli import main
from splitpipe.config import RunConfig
from splitpipe.experiment import emulate, prepare

#: Seconds within which a launch must fail once a node is killed.
FAIL_FAST_S = 60


def write_config(tmp_path: Path, tiny_npz: str, **changes: object) -> tuple[RunConfig, Path]:
    config = RunConfig(technique="pipelearn", dataset=f"npz:{tiny_npz}", devices=2, network="none", epochs=2,
                       batch_size=16, micro_batches=4, progress=False).with_(**changes)
    path = tmp_path / "run.toml"
    path.write_text(config.to_toml())
    return config, path


def test_launch_writes_the_report_of_a_distributed_run(tmp_path: Path, tiny_npz: str) -> None:
    config, path = write_config(tmp_path, tiny_npz)
    out = tmp_path / "out"
    assert main(["launch", str(path), "--out", str(out), "--no-progress", "--threads", "1", "--timeout", "60"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["engine"] == "distributed" and report["timing"] == "wall"
    assert (out / "metrics.csv").is_file() and (out / "timeline.png").is_file()
    emulated = cast(list[dict[str, Any]], emulate(prepare(config)).report["epochs"])
    assert [e["test_accuracy"] for e in report["epochs"]] == [e["test_accuracy"] for e in emulated]
    assert [e["train_loss"] for e in report["epochs"]] == pytest.approx([e["train_loss"] for e in emulated], rel=1e-5)


def test_killing_a_device_fails_the_launch_naming_it(tmp_path: Path, tiny_npz: str) -> None:
    _, path = write_config(tmp_path, tiny_npz, network="4g", epochs=100)  # minutes of training
    launch = subprocess.Popen([sys.executable, "-m", "splitpipe", "launch", str(path), "--no-progress", "--threads", "1"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    lines: queue.Queue[str] = queue.Queue()

    def read() -> None:
        assert launch.stderr is not None
        for line in launch.stderr:
            lines.put(line)

    threading.Thread(target=read, daemon=True).start()
    seen: list[str] = []
    try:
        pid = None
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # (1) wait until device1 trains
            line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
            seen.append(line)
            started = re.search(r"started device1 \(pid (\d+)\)", line)
            pid = int(started.group(1)) if started else pid
            if "device1: epoch 0 started" in line:
                break
        assert pid is not None, "".join(seen)
        os.kill(pid, signal.SIGKILL)  # (2)
        killed = time.monotonic()
        code = launch.wait(timeout=FAIL_FAST_S)
        assert time.monotonic() - killed < FAIL_FAST_S
    finally:
        if launch.poll() is None:
            launch.terminate()
            launch.wait(30)
    time.sleep(0.2)
    while not lines.empty():
        seen.append(lines.get())
    text = "".join(seen)
    assert code == 1, text
    assert f"splitpipe launch: error: node device1 (pid {pid}) was killed by SIGKILL" in text


def test_node_errors_are_one_line_naming_the_value(tmp_path: Path, tiny_npz: str,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    _, path = write_config(tmp_path, tiny_npz)
    secret = tmp_path / "secret"
    secret.write_text("s3cret")
    assert main(["node", "--role", "device", "--id", "7", "--config", str(path)]) == 2
    assert capsys.readouterr().err.strip() == (
        "splitpipe node: error: --id 7 out of range: the plan's device nodes have ids 0, 1")
    assert main(["node", "--role", "device", "--id", "1", "--config", str(path), "--secret-file", str(secret)]) == 2
    assert capsys.readouterr().err.strip() == (
        "splitpipe node: error: device1 needs --coordinator HOST:PORT (where server listens)")
    assert main(["node", "--role", "server", "--config", str(path), "--listen", "nowhere"]) == 2
    assert "--listen 'nowhere' must be HOST:PORT" in capsys.readouterr().err
