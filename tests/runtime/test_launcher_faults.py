"""The launcher's watch: --fail kills a node on time; a data owner's death is survived, another's is not."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from splitpipe.config import RunConfig
from splitpipe.plan import Node, Topology
from splitpipe.runtime.handover import Handover
from splitpipe.runtime.launcher import ClusterFailed, _Child, _Cluster, groups
from splitpipe.runtime.options import NodeOptions

TOPOLOGY = Topology((Node("server", "server"), Node("device0", "device"), Node("device1", "device")), {})


def sleeper(name: str, seconds: float) -> _Child:
    return _Child(name, subprocess.Popen([sys.executable, "-c", f"import time; time.sleep({seconds})"]))


def cluster(tmp_path: Path, expendable: set[str]) -> tuple[_Cluster, _Child, _Child]:
    watched = _Cluster(TOPOLOGY, 0.05, expendable)
    lead, victim = sleeper("server", 3), sleeper("device1", 60)
    watched.children = [lead, victim]
    return watched, lead, victim


def test_fail_kills_the_node_and_a_data_owner_is_not_missed(tmp_path: Path) -> None:
    watched, lead, victim = cluster(tmp_path, {"device0", "device1"})
    try:
        watched.watch(lead, {"device1": 0.3})
        assert victim.process.returncode == -9 and watched.lost == {"device1"}
    finally:
        watched.stop()


def test_the_death_of_a_node_the_run_needs_fails_the_launch_naming_it(tmp_path: Path) -> None:
    watched, lead, victim = cluster(tmp_path, set())
    try:
        with pytest.raises(ClusterFailed, match=r"node device1 \(pid \d+\) was killed by SIGKILL"):
            watched.watch(lead, {"device1": 0.3})
    finally:
        watched.stop()


def test_processes_share_out_the_nodes_the_coordinator_alone() -> None:
    names = ["server", *(f"device{i}" for i in range(5))]
    assert groups(names, None) == [["server"], *([f"device{i}"] for i in range(5))]
    assert groups(names, 3) == [["server"], ["device0", "device2", "device4"], ["device1", "device3"]]
    assert groups(names, 99) == groups(names, None)


def test_a_handover_carries_options_and_keys_and_refuses_garbage() -> None:
    options = NodeOptions(role="device", id=1, coordinator="127.0.0.1:5", config=RunConfig(devices=2))
    handover = Handover((options,), (b"-----BEGIN PRIVATE KEY-----\n",), {"device1": "AAAA"}, 7)
    assert Handover.from_bytes(handover.to_bytes()) == handover
    with pytest.raises(ValueError, match="the launcher's handover is not valid"):
        Handover.from_bytes(b'{"nodes": [{"role": "phone"}], "keys": [], "public": {}, "port_fd": null}')
    with pytest.raises(ValueError, match=r"names 1 node\(s\) and 0 key\(s\)"):
        Handover.from_bytes(handover.to_bytes().replace(b'"keys": ["-----BEGIN PRIVATE KEY-----\\n"]', b'"keys": []'))


def test_a_node_process_ends_cleanly_while_a_daemon_thread_is_inside_torch() -> None:
    """A plain interpreter exit aborts here ("terminate called without an active exception", SIGABRT)."""
    script = ("import threading, torch\n"
              "from splitpipe.runtime.entry import exit_process\n"
              "a, busy = torch.ones(200, 200), threading.Event()\n"
              "def spin():\n"
              "    while True:\n"
              "        busy.set(); a @ a\n"
              "threading.Thread(target=spin, daemon=True).start()\n"
              "busy.wait(60)\n"
              "print('done', flush=False)\n"
              "exit_process(0)\n")
    ended = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert (ended.returncode, ended.stdout) == (0, "done\n"), ended.stderr
