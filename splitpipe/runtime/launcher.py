"""A whole cluster of node processes on this machine: loopback, free ports, one secret, watched.

The launcher writes the config and a fresh secret to a private directory, starts the
coordinator (which writes the report), then every other node, and polls them all: a node
that dies stops the rest at once and the launch fails with that node's name.
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
from dataclasses import dataclass, fields
from pathlib import Path

import splitpipe
from splitpipe.config import RunConfig
from splitpipe.plan import Topology
from splitpipe.runtime.protocol import coordinator_of, node_id
from splitpipe.setup import prepare

__all__ = ["launch", "ClusterFailed", "config_toml"]

log = logging.getLogger("splitpipe.launch")

#: How a child runs the CLI (the package need not be installed, only importable).
CLI = "import sys; from splitpipe.cli import main; sys.exit(main())"
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


def config_toml(config: RunConfig) -> str:
    """The config as TOML that load_toml reads back (unset and per-machine keys left out)."""
    lines = []
    for f in fields(RunConfig):
        value = getattr(config, f.name)
        if f.name in ("extra", "out", "tensorboard", "progress") or value is None:
            continue
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, (int, float)):
            text = repr(value)
        else:
            text = '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'
        lines.append(f"{f.name} = {text}")
    return "\n".join(lines) + "\n"


def launch(config: RunConfig, *, timeout: float = 600.0, emulate_speed: bool = False,
           threads: int | None = None, poll_s: float = 0.1) -> None:
    """Run `config` with one process per node on loopback; the coordinator writes config.out.

    Raises ClusterFailed naming the node when one dies; every other node is stopped first.
    """
    setup = prepare(config)  # every bad value fails here, before a process starts
    coordinator = coordinator_of(setup.plan)
    names = [coordinator, *(n for n in setup.topology.names if n != coordinator)]
    threads = threads or max(1, (os.cpu_count() or 1) // len(names))
    slower = sorted(n.name for n in setup.topology.nodes if n.speed != 1)
    if slower and not emulate_speed:
        log.warning("node speeds of the config (%s, ...) do not apply: every node runs at this machine's "
                    "speed (--emulate-speed stretches slower nodes' compute)", slower[0])
    with tempfile.TemporaryDirectory(prefix="splitpipe-launch-") as tmp:
        work = Path(tmp)
        (work / "run.toml").write_text(config_toml(config))
        secret = work / "secret"
        secret.touch(mode=0o600)
        secret.write_text(secrets.token_hex(32))
        common = ["--config", str(work / "run.toml"), "--secret-file", str(secret), "--timeout", str(timeout),
                  "--threads", str(threads), "--listen", "127.0.0.1:0"]
        if emulate_speed:
            common.append("--emulate-speed")
        cluster = _Cluster(setup.topology, poll_s)
        restore = _exit_on_sigterm()
        try:
            lead_args = [*common, "--port-file", str(work / "port")]
            lead_args += ["--out", config.out] if config.out else []
            lead_args += ["--tensorboard", config.tensorboard] if config.tensorboard else []
            lead_args += [] if config.progress else ["--no-progress"]
            lead = cluster.start(coordinator, lead_args)
            port = cluster.wait_for_port(lead, work / "port", timeout)
            for name in names[1:]:
                cluster.start(name, [*common, "--coordinator", f"127.0.0.1:{port}", "--no-progress"])
            cluster.watch(lead)
        finally:
            cluster.stop()
            restore()


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
    def __init__(self, topology: Topology, poll_s: float) -> None:
        self.topology = topology
        self.poll_s = poll_s
        self.children: list[_Child] = []

    def start(self, name: str, args: list[str]) -> _Child:
        role = self.topology.node(name).role
        command = [sys.executable, "-c", CLI, "node", "--role", role, "--id", str(node_id(name, role)), *args]
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        root = str(Path(splitpipe.__file__).resolve().parent.parent)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
        child = _Child(name, subprocess.Popen(command, env=env))
        self.children.append(child)
        log.info("started %s (pid %d)", name, child.process.pid)
        return child

    def wait_for_port(self, lead: _Child, path: Path, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._check()
            text = path.read_text().strip() if path.exists() else ""
            if text.isdigit():
                return int(text)
            time.sleep(self.poll_s)
        raise ClusterFailed(f"node {lead.name} did not listen within {timeout:g} s")

    def watch(self, lead: _Child) -> None:
        """Until the coordinator exits 0; ClusterFailed as soon as any node exits otherwise."""
        while lead.process.poll() is None:
            self._check()
            time.sleep(self.poll_s)
        self._check()
        deadline = time.monotonic() + GRACE_S
        while any(c.process.poll() is None for c in self.children) and time.monotonic() < deadline:
            time.sleep(self.poll_s)
        self._check()

    def _check(self) -> None:
        failed = [c for c in self.children if c.process.poll() not in (None, 0)]
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
