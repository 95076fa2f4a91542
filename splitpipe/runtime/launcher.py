"""A whole cluster of node processes on this machine: loopback, free ports, a key per node, watched.

Server-side nodes listen on free loopback ports; devices and data owners listen nowhere and dial
their peers (runtime/dialout.py), as phones behind NAT would.

The launcher makes an Ed25519 key per node in memory and pipes each child its nodes' options
(NodeOptions, the run's config inside) and keys on stdin (runtime/handover.py): no secret is
ever written to a file. It starts the coordinator (which writes the report and says its port
on a pipe), then every other node, `--processes` deciding how many share a process, and polls
them all: a process that dies stops the rest at once and the launch fails naming its nodes,
unless they are all data owners the technique can go on without (the coordinator re-plans;
runtime/recovery.py). `config.fail` (NODE@T) kills that node's process with SIGKILL T seconds
after every node started; `config.rejoin` (NODE@T) starts it again, as it was started, once it
is dead and T seconds have passed (the coordinator lets it rejoin at the next epoch boundary).
SIGTERM, SIGINT and SIGHUP stop every node before the launcher exits.
"""

from __future__ import annotations

import logging
import os
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import splitpipe
from splitpipe.config import RunConfig
from splitpipe.plan import Topology
from splitpipe.runtime.dialout import check_dial_out, dials_out
from splitpipe.runtime.handover import Handover
from splitpipe.runtime.liveness import SILENCE_S
from splitpipe.runtime.options import NodeOptions, Role
from splitpipe.runtime.protocol import coordinator_of, node_id
from splitpipe.runtime.recovery import can_drop
from splitpipe.setup import prepare

__all__ = ["launch", "ClusterFailed", "groups"]

log = logging.getLogger("splitpipe.launch")

#: The module a child runs (the package need not be installed, only importable).
ENTRY = "splitpipe.runtime.entry"
#: Seconds the nodes get to exit on their own after the coordinator is done, or after SIGTERM.
GRACE_S = 10.0
#: Node processes at most when --processes is not given (and no --fail): more nodes share them.
AUTO_PROCESSES = 16
#: Signals that stop the launcher and, first, its nodes.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


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


def groups(names: Sequence[str], processes: int | None) -> list[list[str]]:
    """The nodes each process runs: the first (the coordinator) alone, the rest dealt over `processes` - 1."""
    rest = list(names[1:])
    count = len(rest) if processes is None else max(1, min(len(rest), processes - 1))
    return [[names[0]], *([rest[i::count] for i in range(count)] if rest else [])]


def launch(config: RunConfig, *, timeout: float = 600.0, emulate_speed: bool = False,
           threads: int | None = None, poll_s: float = 0.1, processes: int | None = None,
           silence: float = SILENCE_S, resume: str | None = None) -> None:
    """Run `config` on loopback with one process per node (or `processes` in all); the coordinator writes config.out.

    `resume`: an out folder; the coordinator goes on from its last complete checkpoint.

    Raises ClusterFailed naming the node when one dies that the run cannot go on without;
    every other node is stopped first.
    """
    from splitpipe.runtime.transport.identity import new_keys

    setup = prepare(config)  # every bad value fails here, before a process starts
    if processes is not None and config.fail:
        raise ValueError(f"--fail {config.fail[0]} kills a node's process: give it without --processes {processes}")
    if processes is not None and config.rejoin:
        raise ValueError(f"--rejoin {config.rejoin[0]} restarts a node's process: give it without --processes {processes}")
    coordinator = coordinator_of(setup.plan)
    gone = _dead_at(resume) if resume else []
    names = [coordinator, *(n for n in setup.topology.names if n != coordinator and n not in gone)]
    if processes is None and not config.fail and not config.rejoin and len(names) > AUTO_PROCESSES:
        processes = AUTO_PROCESSES  # a process per node costs ~400 MB: 65 would not fit in 24 GB
        log.info("%d nodes share %d processes (--processes sets how many)", len(names), processes)
    shares = groups(names, processes)
    threads = threads or max(1, (os.cpu_count() or 1) // len(shares))
    slower = sorted(n.name for n in setup.topology.nodes if n.speed != 1)
    if slower and not emulate_speed:
        log.warning("node speeds of the config (%s, ...) do not apply: every node runs at this machine's "
                    "speed (--emulate-speed stretches slower nodes' compute)", slower[0])
    keys, public = new_keys(names)
    common: dict[str, Any] = {"timeout": timeout, "threads": threads, "silence": silence, "emulate_speed": emulate_speed, "listen": "127.0.0.1:0"}
    expendable = {n for n in setup.topology.names if can_drop(setup.plan, n)}
    dialling = {n for n in names[1:] if dials_out(setup.plan, n)}   # they listen nowhere
    check_dial_out(setup.plan, dialling)
    cluster = _Cluster(setup.topology, poll_s, expendable, keys, public, dialling)
    restore = _stop_on_signals()
    try:
        read_port, write_port = os.pipe()
        try:
            lead = cluster.start([coordinator], config, port_fd=write_port, resume=resume, **common)
        finally:
            os.close(write_port)
        quiet = config.with_(out=None, progress=False)
        for share in shares[1:]:  # they import and prepare while the coordinator starts
            cluster.start(share, quiet, coordinator_host="127.0.0.1", **common)
        cluster.tell_port(cluster.wait_for_port(lead, read_port, timeout))
        cluster.watch(lead, config.fail_times(), config.rejoin_times())  # nodes checked by prepare
    finally:
        cluster.stop()
        restore()


def _dead_at(out: str) -> list[str]:
    """The nodes dead when `out`'s last checkpoint was written: a resumed launch does not start them."""
    from splitpipe.checkpoint import latest_checkpoint, read_checkpoint

    dead = [str(n) for n in read_checkpoint(latest_checkpoint(out)).state.get("dead", [])]
    if dead:
        log.info("%s died before the checkpoint: not started, the run goes on without them", ", ".join(dead))
    return dead


def _stop_on_signals() -> Callable[[], None]:
    """Let SIGTERM, SIGINT and SIGHUP unwind the launcher (so that it stops its nodes); returns the undo."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def leave(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    previous = {sig: signal.signal(sig, leave) for sig in STOP_SIGNALS}

    def undo() -> None:
        for sig, handler in previous.items():
            signal.signal(sig, handler)

    return undo


class _Cluster:
    def __init__(self, topology: Topology, poll_s: float, expendable: set[str],
                 keys: dict[str, bytes] | None = None, public: dict[str, str] | None = None,
                 dialling: set[str] | None = None) -> None:
        self.topology = topology
        self.dialling = dialling or set()  # nodes that listen nowhere
        self.poll_s = poll_s
        self.expendable = expendable  # nodes whose death the run survives
        self.keys, self.public = keys or {}, public or {}
        self.children: list[_Child] = []
        self.lost: set[str] = set()
        self.handovers: dict[str, bytes] = {}  # what each child was told, to start it again (--rejoin)
        self.port: int | None = None
        self.env = dict(os.environ, PYTHONUNBUFFERED="1")
        root = str(Path(splitpipe.__file__).resolve().parent.parent)
        self.env["PYTHONPATH"] = os.pathsep.join(p for p in (root, self.env.get("PYTHONPATH")) if p)

    def start(self, names: Sequence[str], config: RunConfig, port_fd: int | None = None,
              coordinator_host: str | None = None, **node: Any) -> _Child:
        """Start a process running `names`, each with its NodeOptions (`node` plus its role and id) and key, piped.

        With `coordinator_host`, its stdin stays open for the coordinator's port (tell_port).
        """
        options = []
        for name in names:
            role = self.topology.node(name).role
            own = {**node, "listen": None} if name in self.dialling else node
            options.append(NodeOptions(role=cast(Role, role), id=node_id(name, role), config=config, **own))
        handover = Handover(tuple(options), tuple(self.keys[n] for n in names), self.public, port_fd,
                            coordinator_host).to_bytes()
        child = self._spawn(",".join(names), handover, port_fd, waits=coordinator_host is not None)
        log.info("started %s (pid %d)", " ".join(names), child.process.pid)
        return child

    def _spawn(self, name: str, handover: bytes, port_fd: int | None, waits: bool) -> _Child:
        process = subprocess.Popen([sys.executable, "-m", ENTRY, "-"], env=self.env, stdin=subprocess.PIPE,
                                   pass_fds=() if port_fd is None else (port_fd,))
        child = _Child(name, process)
        self.handovers[name] = handover
        self._write(child, handover, close=not waits)
        if waits and self.port is not None:
            self._write(child, f"{self.port}\n".encode(), close=True)
        self.children.append(child)
        return child

    def _restart(self, child: _Child) -> None:
        """Start a dead node again with the options it had (--rejoin)."""
        self.children.remove(child)
        self.lost.discard(child.name)
        again = self._spawn(child.name, self.handovers[child.name], None, waits=True)
        log.warning("restarted %s (pid %d) as --rejoin asked", child.name, again.process.pid)

    @staticmethod
    def _write(child: _Child, data: bytes, close: bool) -> None:
        stdin = child.process.stdin
        if stdin is None or stdin.closed:
            return
        try:
            stdin.write(data)
            stdin.flush()
            if close:
                stdin.close()
        except BrokenPipeError:  # it died: watch() says how
            pass

    def tell_port(self, port: int) -> None:
        """Send the coordinator's port to every child still waiting for it."""
        self.port = port
        for child in self.children:
            self._write(child, f"{port}\n".encode(), close=True)

    def wait_for_port(self, lead: _Child, pipe: int, timeout: float) -> int:
        """The port the coordinator listens on, as it writes it to `pipe` (closed here)."""
        deadline, text = time.monotonic() + timeout, b""
        try:
            while time.monotonic() < deadline:
                self._check()
                ready, _, _ = select.select([pipe], [], [], self.poll_s)
                if ready:
                    chunk = os.read(pipe, 64)
                    text += chunk
                    if text.endswith(b"\n") and text.strip().isdigit():
                        return int(text)
                    if not chunk:  # it closed the pipe without a port: watch the process say why
                        time.sleep(self.poll_s)
        finally:
            os.close(pipe)
        self._check()
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
            if set(child.name.split(",")) <= self.expendable and child.name not in self.lost:
                self.lost.add(child.name)
                log.warning("%s; the run goes on without it", child.describe())
        failed = [c for c in failed if not set(c.name.split(",")) <= self.expendable]
        if failed:  # a node killed by a signal is the likelier cause of the others' failure
            failed.sort(key=lambda c: (c.process.returncode or 0) >= 0)
            raise ClusterFailed("; ".join(c.describe() for c in failed) + "; stopped the other nodes")

    def stop(self) -> None:
        for child in self.children:  # a child still waiting for the coordinator's port reads the end and exits
            if child.process.stdin is not None and not child.process.stdin.closed:
                try:
                    child.process.stdin.close()
                except BrokenPipeError:
                    pass
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
