"""A whole cluster of node processes on this machine: loopback, free ports, one secret, watched.

Server-side nodes listen on free loopback ports; devices and data owners listen nowhere and dial
their peers (runtime/dialout.py), as phones behind NAT would.

The launcher writes a fresh secret and each node's options (NodeOptions as JSON, the run's
config inside) to a private directory, starts the coordinator (which writes the report),
then every other node as `python -m splitpipe.runtime.entry OPTIONS.json`, and polls them
all: a node that dies stops the rest at once and the launch fails with that node's name, unless
it is a data owner the technique can go on without (the coordinator re-plans; runtime/recovery.py).
`config.fail` (NODE@T) kills that node's process with SIGKILL T seconds after every node started;
`config.rejoin` (NODE@T) starts it again, as it was started, once it is dead and T seconds have
passed (the coordinator lets it rejoin at the next epoch boundary).
"""

from __future__ import annotations

import logging
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import splitpipe
from splitpipe.config import RunConfig
from splitpipe.plan import Topology
from splitpipe.runtime.dialout import check_dial_out, dials_out
from splitpipe.runtime.options import NodeOptions, Role
from splitpipe.runtime.protocol import coordinator_of, node_id
from splitpipe.runtime.recovery import can_drop
from splitpipe.setup import prepare

__all__ = ["launch", "ClusterFailed"]

log = logging.getLogger("splitpipe.launch")

#: The module a child runs (the package need not be installed, only importable).
ENTRY = "splitpipe.runtime.entry"
#: Seconds the nodes get to exit on their own after the coordinator is done, or after SIGTERM.
GRACE_S = 10.0


class ClusterFailed(RuntimeError):
    """A node process died or the cluster did not come up."""


@dataclass
class _Child:
    name: str
    process: subprocess.Popen[bytes]

    def describe(self) -> str:
        code = self.process.returncode
        if code is not None and code < 0:
            return f"node {self.name} (pid {self.process.pid}) was killed by {signal.Signals(-code).name}"
        return f"node {self.name} (pid {self.process.pid}) exited with code {code}"


def launch(config: RunConfig, *, timeout: float = 600.0, emulate_speed: bool = False,
           threads: int | None = None, poll_s: float = 0.1, resume: str | None = None) -> None:
    """Run `config` with one process per node on loopback; the coordinator writes config.out.

    `resume`: an out folder; the coordinator goes on from its last complete checkpoint.

    Raises ClusterFailed naming the node when one dies that the run cannot go on without;
    every other node is stopped first.
    """
    setup = prepare(config)  # every bad value fails here, before a process starts
    if config.round_deadline is not None:
        raise ValueError(f"--round-deadline {config.round_deadline:g}: real runs do not apply it yet (emulator only)")
    coordinator = coordinator_of(setup.plan)
    names = [coordinator, *(n for n in setup.topology.names if n != coordinator)]
    threads = threads or max(1, (os.cpu_count() or 1) // len(names))
    slower = sorted(n.name for n in setup.topology.nodes if n.speed != 1)
    if slower and not emulate_speed:
        log.warning("node speeds of the config (%s, ...) do not apply: every node runs at this machine's "
                    "speed (--emulate-speed stretches slower nodes' compute)", slower[0])
    with tempfile.TemporaryDirectory(prefix="splitpipe-launch-") as tmp:
        work = Path(tmp)
        secret = _private(work / "secret", secrets.token_hex(32))
        common = {"secret_file": str(secret), "timeout": timeout, "threads": threads, "emulate_speed": emulate_speed}
        dialling = {n for n in names[1:] if dials_out(setup.plan, n)}   # they listen nowhere
        check_dial_out(setup.plan, dialling)
        expendable = {n for n in setup.topology.names if can_drop(setup.plan, n)}
        cluster = _Cluster(setup.topology, work, poll_s, expendable)
        restore = _exit_on_sigterm()
        try:
            lead = cluster.start(coordinator, config, port_file=str(work / "port"), listen="127.0.0.1:0",
                                 resume=resume, **common)
            port = cluster.wait_for_port(lead, work / "port", timeout)
            quiet = config.with_(out=None, progress=False)
            for name in names[1:]:
                listen = None if name in dialling else "127.0.0.1:0"
                cluster.start(name, quiet, coordinator=f"127.0.0.1:{port}", listen=listen, **common)
            cluster.watch(lead, config.fail_times(), config.rejoin_times())  # nodes checked by prepare
        finally:
            cluster.stop()
            restore()


def _private(path: Path, text: str) -> Path:
    """Write `text` to a file only this user may read (created 0600, never wider)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as file:
        file.write(text)
    return path


def _exit_on_sigterm() -> Callable[[], None]:
    """Let SIGTERM unwind the launcher (so that it stops its nodes); returns the undo."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def leave(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, leave)

    def undo() -> None:
        signal.signal(signal.SIGTERM, previous)

    return undo


class _Cluster:
    def __init__(self, topology: Topology, work: Path, poll_s: float, expendable: set[str]) -> None:
        self.topology = topology
        self.work = work
        self.poll_s = poll_s
        self.expendable = expendable  # nodes whose death the run survives
        self.children: list[_Child] = []
        self.lost: set[str] = set()
        self.env = dict(os.environ, PYTHONUNBUFFERED="1")
        root = str(Path(splitpipe.__file__).resolve().parent.parent)
        self.env["PYTHONPATH"] = os.pathsep.join(p for p in (root, self.env.get("PYTHONPATH")) if p)

    def start(self, name: str, config: RunConfig, **node: Any) -> _Child:
        """Start node `name` with its NodeOptions (`node` plus its role and id) handed over as a JSON file."""
        role = self.topology.node(name).role
        options = NodeOptions(role=cast(Role, role), id=node_id(name, role), config=config, **node)
        path = _private(self.work / f"{name}.json", options.model_dump_json())
        command = [sys.executable, "-m", ENTRY, str(path)]
        child = _Child(name, subprocess.Popen(command, env=self.env))
        self.children.append(child)
        log.info("started %s (pid %d)", name, child.process.pid)
        return child

    def _restart(self, child: _Child) -> None:
        """Start a dead node again with the options it had (--rejoin)."""
        self.children.remove(child)
        self.lost.discard(child.name)
        command = [sys.executable, "-m", ENTRY, str(self.work / f"{child.name}.json")]
        again = _Child(child.name, subprocess.Popen(command, env=self.env))
        self.children.append(again)
        log.warning("restarted %s (pid %d) as --rejoin asked", child.name, again.process.pid)

    def wait_for_port(self, lead: _Child, path: Path, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._check()
            text = path.read_text().strip() if path.exists() else ""
            if text.isdigit():
                return int(text)
            time.sleep(self.poll_s)
        raise ClusterFailed(f"node {lead.name} did not listen within {timeout:g} s")

    def watch(self, lead: _Child, kills: dict[str, float] | None = None,
              restarts: dict[str, float] | None = None) -> None:
        """Until the coordinator exits 0; ClusterFailed as soon as a node it needs exits otherwise.

        `kills`: node -> seconds from now at which its process gets SIGKILL (--fail);
        `restarts`: node -> seconds from now after which it is started again once dead (--rejoin).
        """
        started, kills, restarts = time.monotonic(), dict(kills or {}), dict(restarts or {})
        while lead.process.poll() is None:
            for child in list(self.children):
                if child.name in kills and time.monotonic() - started >= kills[child.name]:
                    del kills[child.name]
                    log.warning("killing %s (pid %d) as --fail asked", child.name, child.process.pid)
                    child.process.kill()
                if (child.name in restarts and child.name in self.lost and child.process.poll() is not None
                        and time.monotonic() - started >= restarts[child.name]):
                    del restarts[child.name]
                    self._restart(child)
            self._check()
            time.sleep(self.poll_s)
        self._check()
        deadline = time.monotonic() + GRACE_S
        while any(c.process.poll() is None for c in self.children) and time.monotonic() < deadline:
            time.sleep(self.poll_s)
        self._check()

    def _check(self) -> None:
        failed = [c for c in self.children if c.process.poll() not in (None, 0)]
        for child in failed:
            if child.name in self.expendable and child.name not in self.lost:
                self.lost.add(child.name)
                log.warning("%s; the run goes on without it", child.describe())
        failed = [c for c in failed if c.name not in self.expendable]
        if failed:  # a node killed by a signal is the likelier cause of the others' failure
            failed.sort(key=lambda c: (c.process.returncode or 0) >= 0)
            raise ClusterFailed("; ".join(c.describe() for c in failed) + "; stopped the other nodes")

    def stop(self) -> None:
        alive = [c for c in self.children if c.process.poll() is None]
        for child in alive:
            child.process.terminate()
        deadline = time.monotonic() + GRACE_S
        for child in alive:
            try:
                child.process.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.process.kill()
                child.process.wait()
