"""The launcher's watch: --fail kills a node on time; a data owner's death is survived, another's is not."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from splitpipe.plan import Node, Topology
from splitpipe.runtime.launcher import ClusterFailed, _Child, _Cluster

TOPOLOGY = Topology((Node("server", "server"), Node("device0", "device"), Node("device1", "device")), {})


def sleeper(name: str, seconds: float) -> _Child:
    return _Child(name, subprocess.Popen([sys.executable, "-c", f"import time; time.sleep({seconds})"]))


def cluster(tmp_path: Path, expendable: set[str]) -> tuple[_Cluster, _Child, _Child]:
    watched = _Cluster(TOPOLOGY, tmp_path, 0.05, expendable)
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
