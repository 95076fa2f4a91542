"""`splitpipe launch`: real node processes over loopback gRPC; a killed device is dropped, a killed coordinator ends all."""

from __future__ import annotations

import contextlib
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
import torch

from splitpipe.checkpoint import latest_checkpoint, load_model, read_checkpoint
from splitpipe.cli import main
from splitpipe.config import RunConfig
from splitpipe.experiment import emulate, prepare

#: Seconds within which a launch must fail once a node is killed.
FAIL_FAST_S = 60
#: Seconds within which nodes must exit on their own once their coordinator died (a deadline that a loaded
#: host meets: a broken stream is noticed at once, a silent coordinator after --silence, 10 s).
ORPHAN_S = 30
#: Seconds a short launch may take to finish its epochs on a loaded 2-core host (a deadline, not a speed goal).
FINISH_S = 300


def write_config(tmp_path: Path, tiny_npz: str, **changes: object) -> tuple[RunConfig, Path]:
    config = RunConfig(technique="pipelearn", dataset=f"npz:{tiny_npz}", devices=2, network="none", epochs=2,
                       batch_size=16, micro_batches=4, progress=False).with_(**changes)
    path = tmp_path / "run.toml"
    path.write_text(config.to_toml())
    return config, path


def test_launch_writes_the_report_of_a_distributed_run(tmp_path: Path, tiny_npz: str, monkeypatch, capfd) -> None:
    listens = spy_on_listen(monkeypatch)
    config, path = write_config(tmp_path, tiny_npz)
    out = tmp_path / "out"
    # both devices in one process, each with its own key and streams (the other tests run one process per node)
    assert main(["launch", str(path), "--out", str(out), "--no-progress", "--threads", "1", "--timeout", "60",
                 "--processes", "2"]) == 0
    assert listens == {"server": "127.0.0.1:0", "device0": None, "device1": None}   # devices dial out (issue 12)
    log = capfd.readouterr().err
    for device in ("device0", "device1"):
        assert f"{device}: dials out, listens nowhere" in log and f"{device}: listening" not in log
    assert "refused a connection" not in log   # start-up and shutdown are no attack
    report = json.loads((out / "report.json").read_text())
    assert report["engine"] == "distributed" and report["timing"] == "wall"
    assert (out / "metrics.csv").is_file() and (out / "timeline.png").is_file()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the nodes' --threads 1: the same kernels give the same floats
    try:
        result = emulate(prepare(config))
    finally:
        torch.set_num_threads(threads)
    emulated = cast(list[dict[str, Any]], result.report["epochs"])
    assert [e["test_accuracy"] for e in report["epochs"]] == [e["test_accuracy"] for e in emulated]
    assert [e["train_loss"] for e in report["epochs"]] == pytest.approx([e["train_loss"] for e in emulated], rel=1e-5)
    # bit for bit, BatchNorm's statistics too: the two devices of one process share one setup, whose
    # model their transports' bounds once ran in train mode under load (models/zoo.py unit_output_shapes)
    saved, expected = load_model(out / "model.safetensors").state_dict(), result.model.state_dict()
    assert saved.keys() == expected.keys() and all(torch.equal(saved[k], expected[k]) for k in expected)


def spy_on_listen(monkeypatch: pytest.MonkeyPatch) -> dict[str, object]:
    """Where the launcher tells each node to listen (None: nowhere, it dials out), filled as it hands them over."""
    from splitpipe.runtime import launcher
    listens: dict[str, object] = {}
    made = launcher.Handover

    def spy(nodes, *args, **kwargs):  # noqa: ANN001, ANN202
        for options in nodes:
            listens[options.role if options.role == "server" else f"{options.role}{options.id}"] = options.listen
        return made(nodes, *args, **kwargs)

    monkeypatch.setattr(launcher, "Handover", spy)
    return listens


class Launch:
    """`splitpipe launch` in a child process, its stderr read line by line as it comes."""

    def __init__(self, path: Path, *flags: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "splitpipe", "launch", str(path), "--no-progress", "--threads", "1", *flags],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        self.pids: dict[str, int] = {}
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.put(line)

    def wait_for(self, text: str, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                break
            self.seen.append(line)
            started = re.search(r"started (\w+) \(pid (\d+)\)", line)
            if started:
                self.pids[started.group(1)] = int(started.group(2))
            if text in line:
                return
        raise AssertionError(f"no line with {text!r} within {timeout} s:\n{self.text()}")

    def text(self) -> str:
        time.sleep(0.2)
        while not self.lines.empty():
            self.seen.append(self.lines.get())
        return "".join(self.seen)

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(30)


def test_a_device_killed_mid_run_is_dropped_and_the_run_goes_on(tmp_path: Path, tiny_npz: str) -> None:
    _, path = write_config(tmp_path, tiny_npz, devices=4, epochs=6)
    out = tmp_path / "out"
    # device0 and device3 share a process, device2 (the one killed) has its own: 4 processes start, not 5
    launch = Launch(path, "--out", str(out), "--timeout", "60", "--processes", "4")
    try:
        launch.wait_for("started device2 (pid")
        launch.wait_for("device2: epoch 2 started")  # (1) device2 trains
        os.kill(launch.pids["device2"], signal.SIGKILL)  # (2)
        code = launch.process.wait(timeout=FAIL_FAST_S)
    finally:
        launch.close()
    text = launch.text()
    assert code == 0, text
    assert "device2 (pid" in text and "was killed by SIGKILL; the run goes on without it" in text
    report = json.loads((out / "report.json").read_text())
    failure = report["events"][0]
    assert (failure["event"], failure["nodes"], failure["epoch"]) == ("failure", ["device2"], 2)
    survivors = ["device0", "device1", "device3"]
    assert [e["participants"] for e in report["epochs"]][2:] == [survivors] * 4
    assert report["epochs"][-1]["test_accuracy"] >= 0.8  # failure-free: 0.98 on this data


@pytest.mark.parametrize("technique", ["sfl", "fl"])
def test_sfl_and_fl_go_on_without_a_sigkilled_device(technique: str, tmp_path: Path, tiny_npz: str) -> None:
    _, path = write_config(tmp_path, tiny_npz, technique=technique, devices=3, epochs=3)
    out = tmp_path / "out"
    # nodes start slowly on a loaded host; device0 and device2 share a process, device1 (the one killed) has its own
    launch = Launch(path, "--out", str(out), "--timeout", "120", "--processes", "3")
    try:
        launch.wait_for("started device1 (pid")
        launch.wait_for("device1: epoch 1 started")
        os.kill(launch.pids["device1"], signal.SIGKILL)
        code = launch.process.wait(timeout=FINISH_S)
    finally:
        launch.close()
    assert code == 0, launch.text()
    report = json.loads((out / "report.json").read_text())
    assert [(e["event"], e["nodes"], e["epoch"]) for e in report["events"]] == [("failure", ["device1"], 1), ("dropout", ["device1"], 1)]
    assert [e["participants"] for e in report["epochs"]] == [["device0", "device1", "device2"]] + [
        ["device0", "device2"]] * 2


def test_a_killed_device_restarted_by_rejoin_trains_again(tmp_path: Path, tiny_npz: str) -> None:
    _, path = write_config(tmp_path, tiny_npz, epochs=500, rejoin=("device1@0",))  # minutes: stopped below
    launch = Launch(path, "--timeout", "120")
    try:
        launch.wait_for("device1: epoch 1 started")
        first = launch.pids["device1"]
        os.kill(first, signal.SIGKILL)
        launch.wait_for("restarted device1")  # (1) the launcher starts it again once it is dead
        assert launch.pids["device1"] != first
        launch.wait_for("server: device1 rejoined")  # (2) let in at an epoch boundary
        launch.wait_for("device1: epoch")  # (3) and training again
    finally:
        launch.close()


def test_a_killed_coordinator_ends_every_node_within_seconds(tmp_path: Path, tiny_npz: str) -> None:
    _, path = write_config(tmp_path, tiny_npz, epochs=100)  # minutes of training
    launch = Launch(path, "--timeout", "60")
    try:
        launch.wait_for("device1: epoch 1 started")
        os.kill(launch.pids["server"], signal.SIGKILL)
        killed = time.monotonic()
        code = launch.process.wait(timeout=FAIL_FAST_S)
        while any(_alive(pid) for pid in launch.pids.values()) and time.monotonic() - killed < 10:
            time.sleep(0.1)
        assert not [name for name, pid in launch.pids.items() if _alive(pid)], "orphan node processes"
    finally:
        launch.close()
    text = launch.text()
    assert code == 1, text
    assert f"splitpipe launch: error: node server (pid {launch.pids['server']}) was killed by SIGKILL" in text


def test_nodes_exit_on_their_own_with_one_line_when_the_coordinator_and_the_launcher_die(tmp_path: Path,
                                                                                         tiny_npz: str) -> None:
    """No launcher is left to stop them (a manual cluster has none): each node notices the broken stream."""
    _, path = write_config(tmp_path, tiny_npz, epochs=100)  # minutes of training
    launch = Launch(path, "--timeout", "60", "--processes", "2")  # the devices share a process
    try:
        launch.wait_for("device1: epoch 1 started")
        devices = int(re.findall(r"started device0 device1 \(pid (\d+)\)", launch.text())[0])
        os.kill(launch.process.pid, signal.SIGKILL)  # nobody cleans up after the nodes
        os.kill(launch.pids["server"], signal.SIGKILL)
        deadline = time.monotonic() + ORPHAN_S
        while _running(devices) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _running(devices), "orphan node process"
    finally:
        for pid in launch.pids.values():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        launch.process.wait(30)
    text = launch.text()
    for device in ("device0", "device1"):
        errors = [line for line in text.splitlines() if line.startswith(f"splitpipe node {device}: error:")]
        assert len(errors) == 1 and "server" in errors[0], text


def _running(pid: int) -> bool:
    """Whether `pid` still runs (a zombie whose parent died and that nobody reaped does not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    except OSError:
        return _alive(pid)
    return state not in ("Z", "X")


def test_a_launch_killed_between_epochs_resumes_to_an_uninterrupted_runs_weights(tmp_path: Path,
                                                                                  tiny_npz: str) -> None:
    config, path = write_config(tmp_path, tiny_npz, epochs=3)
    out = tmp_path / "out"
    launch = Launch(path, "--out", str(out), "--timeout", "120", "--processes", "2")  # the devices share one
    try:
        launch.wait_for("device1: epoch 1 started")  # the checkpoint after epoch 0 is written by then
        os.kill(launch.pids["server"], signal.SIGKILL)
        assert launch.process.wait(timeout=FAIL_FAST_S) == 1, launch.text()
    finally:
        launch.close()
    assert read_checkpoint(latest_checkpoint(out)).epoch < 2 and not (out / "model.safetensors").exists()
    assert main(["launch", "--resume", str(out), "--no-progress", "--threads", "1", "--timeout", "120",
                 "--processes", "2"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert [e["epoch"] for e in report["epochs"]] == [0, 1, 2]
    resumed, whole = load_model(out / "model.safetensors").state_dict(), emulate(prepare(config)).model
    assert whole is not None
    for key, value in whole.state_dict().items():
        torch.testing.assert_close(resumed[key], value, rtol=1e-5, atol=1e-6, msg=key)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


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
