"""A real FTPipeHD run (`splitpipe launch`, a process per stage) survives a worker SIGKILLed by the
test mid-epoch: the central node drops it, re-runs the DP over the survivors, rebuilds every
layer from the nearest surviving copy (runtime/handoff.py) and redoes the interrupted segment
(`--repartition-every` steps: the run re-partitions there too), not the whole epoch."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any, cast

from splitpipe.experiment import emulate, prepare
from splitpipe.runtime.recovery import can_drop

from .test_launch import FINISH_S, Launch, write_config

EVERY = 3  # steps per segment (12 an epoch)


def test_a_worker_killed_mid_epoch_costs_only_its_segment(tmp_path: Path, tiny_npz: str) -> None:
    config, path = write_config(tmp_path, tiny_npz, technique="ftpipehd", stages=4, micro_batches=2, epochs=5,
                                replicate_every=2, replicate_central_every=4, repartition_every=EVERY,
                                checkpoint_every=0)
    out = tmp_path / "out"
    launch = Launch(path, "--out", str(out), "--timeout", "120")
    try:
        launch.wait_for(f"worker2: epoch 1 started at step {EVERY}")  # mid-epoch
        started = "".join(launch.seen)   # the coordinator probed each worker's address: no refusal for that
        assert "refused a connection" not in started, started
        os.kill(launch.pids["worker2"], signal.SIGKILL)  # the test's own kill, not --fail
        code = launch.process.wait(timeout=FINISH_S)
    finally:
        launch.close()
    text = launch.text()
    assert code == 0, text
    assert "worker2 (pid" in text and "was killed by SIGKILL; the run goes on without it" in text
    assert text.count("was killed by") == 1 and "terminate called" not in text, text   # the others end cleanly
    report = json.loads((out / "report.json").read_text())
    events = report["events"]
    kinds = [e["event"] for e in events]
    assert kinds.count("failure") == 1 and set(kinds) <= {"failure", "recovery", "repartition"}, events
    at = kinds.index("failure")
    failure, recovery = events[at:at + 2]
    assert (failure["nodes"], recovery["event"], recovery["nodes"]) == (["worker2"], "recovery", ["worker2"])
    assert failure["epoch"] >= 1 and failure["step"] % EVERY == 0 and failure["lost_steps"] <= EVERY, failure
    assert len(failure["cuts_before"]) == 3 and len(recovery["cuts_after"]) == 2  # three stages left
    rows = report["epochs"]
    assert rows[-1]["cuts"] == events[-1]["cuts_after"] and len(rows) == 5
    clean = cast(list[dict[str, Any]], emulate(prepare(config)).report["epochs"])  # the failure-free run
    assert rows[-1]["test_accuracy"] >= clean[-1]["test_accuracy"] - 0.02


def test_a_stalled_worker_is_found_by_the_backward_timeout(tmp_path: Path, tiny_npz: str) -> None:
    """SIGSTOP keeps worker2's connections open and its heartbeats off; with --silence 120 only the backward
    timeout finds it: worker1, waiting for its gradient, polls it, gets no answer and reports it; the central
    node's own poll confirms it (runtime/liveness.py). The run goes on without it."""
    _, path = write_config(tmp_path, tiny_npz, technique="ftpipehd", stages=3, micro_batches=2, epochs=2,
                           replicate_every=2, replicate_central_every=4, repartition_every=0, checkpoint_every=0)
    out = tmp_path / "out"
    launch = Launch(path, "--out", str(out), "--timeout", "300", "--silence", "120")
    stopped = None
    try:
        launch.wait_for("worker2: epoch 1 started")
        stopped = launch.pids["worker2"]
        os.kill(stopped, signal.SIGSTOP)
        launch.wait_for("epoch 1 is redone without worker2")
        os.kill(stopped, signal.SIGKILL)  # dropped: the launcher need not wait for it at the end
        code = launch.process.wait(timeout=FINISH_S)
    finally:
        if stopped is not None:
            try:
                os.kill(stopped, signal.SIGKILL)
            except ProcessLookupError:
                pass
        launch.close()
    text = launch.text()
    assert code == 0, text
    assert "no answer to a liveness poll" in text, text
    report = json.loads((out / "report.json").read_text())
    failure, recovery = report["events"]
    assert (failure["event"], failure["nodes"], failure["detected"]) == ("failure", ["worker2"], "backward timeout")
    assert (recovery["event"], recovery["detected"]) == ("recovery", "backward timeout")
    assert len(recovery["cuts_after"]) == 1 and len(report["epochs"]) == 2  # two stages left


def test_the_central_node_is_never_expendable(tmp_path: Path, tiny_npz: str) -> None:
    """It holds the data (a data owner) but coordinates: its death ends the launch (exit 1, one line)."""
    config, _ = write_config(tmp_path, tiny_npz, technique="ftpipehd", stages=3)
    plan = prepare(config).plan
    assert [n for n in plan.topology.names if can_drop(plan, n)] == ["worker1", "worker2"]
