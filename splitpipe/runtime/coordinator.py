"""The coordinating node (the server, or the central node): it runs its own lanes like any node,
and besides gathers the others, estimates their clocks, starts each epoch and merges the traces.

Every phase has a timeout, and a node that fails or falls silent stops the run with its name,
unless it is a data owner the technique can go on without: then the epoch is called off and
redone without it (runtime/recovery.py), as the emulator does at a scripted failure.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace

import torch
from torch import nn

from splitpipe.engine.carry import carry_over
from splitpipe.engine.events import NodeFailed
from splitpipe.engine.mark import Mark
from splitpipe.loop import run_loop
from splitpipe.plan import Plan
from splitpipe.runtime.address import CONNECT_S, probe
from splitpipe.runtime.clock import ClockOffset, ClockSample, estimate_offset
from splitpipe.runtime.liveness import SILENCE_S, Heartbeat
from splitpipe.runtime.mailbox import Mailbox, PeerLost, PhaseTimeout, RemoteFailure
from splitpipe.runtime.node import NodeRunner, node_executor
from splitpipe.runtime.protocol import assignment, config_mismatch, gather_tag, spans_from_body
from splitpipe.runtime.recovery import can_drop, peers_of, send_fences
from splitpipe.runtime.transport import Message, Transport
from splitpipe.schedules import Segment, build_schedule
from splitpipe.schedules.ir import Replica, Schedule
from splitpipe.setup import Setup, report_header
from splitpipe.span import Span

__all__ = ["Coordinator", "ClusterResult"]

log = logging.getLogger("splitpipe.runtime")

State = dict[str, torch.Tensor]
Progress = Callable[[int, dict[str, object]], None]


@dataclass
class ClusterResult:
    """The run's report (engine "distributed"), merged spans, and every replica's final weights."""

    report: dict[str, object]
    spans: list[Span]
    states: dict[Replica, State] = field(default_factory=dict)
    model: nn.Module | None = None
    """The global model at the end (each part averaged as for evaluation)."""


class Coordinator:
    """Runs a whole cluster from node `name`: join, assign, clocks, epochs, stop.

    `timeout` bounds every phase (a node joining, a report coming in, no progress within an
    epoch); a node that joined and then falls silent for `silence_s` seconds fails the run
    sooner. `address` is where the others reach this node, passed on to them as a peer.
    """

    def __init__(self, setup: Setup, name: str, transport: Transport, *, address: str = "",
                 timeout: float = 600.0, silence_s: float = SILENCE_S, pings: int = 8, speed: float = 1.0,
                 progress: Progress | None = None) -> None:
        self.setup, self.name, self.transport = setup, name, transport
        self.address, self.timeout, self.pings, self.speed = address, timeout, pings, speed
        self.progress = progress
        self.mailbox = Mailbox(transport, silence_s, name)
        self.members = [n for n in setup.topology.names if n != name]
        self.addresses: dict[str, str] = {}
        self.offsets: dict[str, ClockOffset] = {name: ClockOffset(0.0, 0.0)}
        self.executor = node_executor(setup, name)
        self.states: dict[Replica, State] = {}
        self.loss = (0.0, 0)
        self.wall_s = 0.0
        self.dropped: list[str] = []  # data owners that died, in order
        self.saved: Mark | None = None  # own state at the running epoch's start
        self.schedule: Schedule | None = None
        self._epoch = 0
        self.shards = dict(zip(setup.plan.owners, setup.shards))

    def run(self) -> ClusterResult:
        self.heartbeat = Heartbeat(self.transport, lost=self.mailbox.unreachable)  # to each node once it joined
        try:
            self._join()
            self._assign()
            self._sync_clocks()
            result = run_loop(self.setup.plan, self, range(self.setup.config.epochs), progress=self.progress)
            self._broadcast({"type": "stop"})
        except RemoteFailure as exc:
            self._broadcast({"type": "abort", "node": exc.node, "message": exc.reason})
            raise
        except BaseException as exc:
            self._broadcast({"type": "abort", "node": self.name, "message": str(exc) or repr(exc)})
            raise
        finally:
            self.heartbeat.close()
        rows, spans, states = result.rows, result.spans, self.states
        nodes = {n: {"offset_s": o.offset_s, "rtt_s": o.rtt_s} for n, o in sorted(self.offsets.items())}
        report = report_header(self.setup, "wall", engine="distributed") | {"epochs": rows, "nodes": nodes}
        if result.events:
            report["events"] = result.events
        model = self.executor.global_model(result.schedule, states=states) if result.schedule else None
        return ClusterResult(report, spans, states, model)

    # -- (1) join, (2) assign, (3) clocks ------------------------------------------------
    def _join(self) -> None:
        deadline = time.monotonic() + self.timeout
        while len(self.addresses) < len(self.members):
            missing = [n for n in self.members if n not in self.addresses]
            try:
                message = self.mailbox.control(max(0.0, deadline - time.monotonic()), "nodes to join")
            except PhaseTimeout:
                raise PhaseTimeout(f"node(s) {', '.join(missing)} did not join within {self.timeout:g} s") from None
            body = self._expect(message, "hello")
            name = message.src
            if body["name"] != name or name not in self.members or name in self.addresses:
                raise RuntimeError(f"unexpected hello from {name} as {body['name']!r}; waiting for {', '.join(missing)}")
            self.addresses[name] = str(body["address"])
            self._reach(name, self.addresses[name])
            self.mailbox.add_peer(name, self.addresses[name])  # first, so that an abort reaches it too
            role = self.setup.topology.node(name).role
            if body["role"] != role:
                raise ValueError(f"node {name} joined as role {body['role']}, the plan makes it a {role}")
            diffs = config_mismatch(self.setup.config, body["config"])  # type: ignore[arg-type]
            if diffs:
                raise ValueError(f"node {name} has a different config: {'; '.join(diffs)}")
            self.mailbox.watch(name)
            self.heartbeat.add(name)
            log.info("%s: %s joined from %s", self.name, name, self.addresses[name] or "in-process")

    def _assign(self) -> None:
        schedule = build_schedule(self.setup.plan, 0)
        peers = {**self.addresses, self.name: self.address}
        for member in self.members:
            self.transport.send_control(member, assignment(schedule, member, peers, self.setup.config.seed,
                                                           self.setup.config.epochs))

    def _sync_clocks(self) -> None:
        samples: dict[str, list[ClockSample]] = {m: [] for m in self.members}
        for seq in range(self.pings):
            sent = {}
            for member in self.members:
                sent[member] = time.time()
                self.transport.send_control(member, {"type": "ping", "seq": seq, "t0": sent[member]})
            for _ in self.members:
                message = self.mailbox.control(self.timeout, "clock pongs")
                body = self._expect(message, "pong")
                if body["seq"] != seq:
                    raise RuntimeError(f"node {message.src} answered ping {seq} with pong {body['seq']}")
                samples[message.src].append(ClockSample(sent[message.src], float(body["t1"]), float(body["t2"]),
                                                        message.received_at))
        for member, taken in samples.items():
            self.offsets[member] = estimate_offset(taken)

    # -- (4) and (5): one epoch, as an engine of the run loop ----------------------------
    def run_segment(self, plan: Plan, schedule: Schedule, segment: Segment,
                    failures: Mapping[str, float] | None = None) -> list[Span]:
        """One epoch on every node; NodeFailed (for the run loop) when a data owner it can lose dies."""
        if failures:
            raise RuntimeError("real runs take no scripted failures: the launcher kills the node (launch --fail)")
        if segment.start != 0 or not segment.ends_epoch:
            raise RuntimeError("real runs change plans only between epochs")
        self.at: float | None = None
        try:
            return self._run_epoch(plan, schedule, segment.epoch)
        except (RemoteFailure, PeerLost) as exc:
            node = self._blame(plan, exc)
            if node not in self.members or not can_drop(plan, node):
                if node == exc.node:
                    raise
                raise RemoteFailure(node, str(exc)) from None
            log.warning("%s: %s; epoch %d is redone without %s", self.name, exc, segment.epoch, node)
            self._drop(node)
            time_s = 0.0 if self.at is None else max(0.0, time.time() - self.at)
            raise NodeFailed(node, time_s, []) from None

    def _blame(self, plan: Plan, failure: RemoteFailure | PeerLost) -> str:
        """The node a failure report is held against: a data owner the run can lose speaks for itself only
        (so one cannot stop the run by naming the server), other nodes for the peers the plan gives them."""
        reporter = getattr(failure, "reporter", failure.node)
        if reporter in (failure.node, self.name) or can_drop(plan, reporter):
            return reporter if reporter != self.name else failure.node
        sends, receives = peers_of(self.schedule, reporter)
        return failure.node if failure.node in sends | receives else reporter

    def _run_epoch(self, plan: Plan, schedule: Schedule, epoch: int) -> list[Span]:
        topology = plan.topology
        self.schedule, self._epoch = schedule, epoch
        for member in self.members:
            self.transport.send_control(member, {"type": "prepare", "epoch": epoch})
        self.executor.begin_epoch(epoch, schedule)
        self.saved = Mark.take(self.executor)
        for message in self._reports(f"the nodes to prepare epoch {epoch}"):
            body = self._expect(message, "ready")
            if body["epoch"] != epoch:
                raise RemoteFailure(message.src, f"prepared epoch {body['epoch']}, not {epoch}")
        margin = 0.02 + 4 * max(o.rtt_s for o in self.offsets.values())
        at = self.at = time.time() + margin
        for member in self.members:
            self.transport.send_control(member, {"type": "start", "epoch": epoch, "at": self.offsets[member].to_node(at)})
        time.sleep(max(0.0, at - time.time()))
        wall = time.perf_counter()
        own = NodeRunner(self.name, schedule, self.executor, self.mailbox, topology, epoch,
                         timeout=self.timeout, speed=self.speed).run()
        spans = [replace(s, start=s.start - at, end=s.end - at) for s in own]
        self.executor.end_epoch()
        self.loss = (self.executor.loss_sum, self.executor.loss_count)
        self.states = {}
        for message in self._reports(f"the reports of epoch {epoch}"):
            body, src = self._expect(message, "done"), message.src
            try:
                spans += spans_from_body(body["spans"], src, -self.offsets[src].offset_s - at)  # type: ignore[arg-type]
                self.loss = (self.loss[0] + float(body["loss_sum"]), self.loss[1] + int(body["loss_count"]))  # type: ignore[arg-type,call-overload]
                replicas = [Replica(src, int(part), int(index)) for part, index in body["sent"]]  # type: ignore[union-attr]
            except (TypeError, ValueError, RuntimeError) as exc:
                raise RemoteFailure(src, f"sent a bad report of epoch {epoch}: {exc}") from None
            for replica in replicas:
                data = self.mailbox.take_data(gather_tag(replica, epoch), self.timeout, f"the weights of {replica}")
                self.states[replica] = data.payload  # type: ignore[assignment]
        self.wall_s = time.perf_counter() - wall
        if epoch == self.setup.config.epochs - 1:
            for replica in schedule.replicas:
                if replica.node == self.name:
                    self.states[replica] = {k: v.detach().cpu().clone()
                                            for k, v in self.executor.module(replica).state_dict().items()}
        return spans

    def finish_epoch(self, plan: Plan, schedule: Schedule, epoch: int) -> dict[str, object]:
        loss_sum, loss_count = self.loss
        return {"train_loss": loss_sum / max(1, loss_count),
                "test_accuracy": self.executor.evaluate(schedule, states=self.states), "wall_s": self.wall_s}

    def adopt(self, old: Plan, new: Plan, owners: Mapping[int, int]) -> None:
        """recovery.py (4): own replicas carried over; the others make the same re-plan from the dead list."""
        carry_over(self.executor, new, owners, build_schedule(new, 0).replicas, [self.shards[n] for n in new.owners])
        for member in self.members:
            self.transport.send_control(member, {"type": "adopt", "dead": self.dropped, "owners": list(new.owners)})

    def mark(self) -> None:
        """Nothing: every epoch is marked as it starts, since a real node may die at any moment."""

    def rewind(self) -> None:
        """recovery.py (2): every survivor back to the epoch's start; returns once none sends any more."""
        for member in self.members:
            self.transport.send_control(member, {"type": "rewind", "epoch": self._epoch, "dead": self.dropped})
        sends, _ = peers_of(self.schedule, self.name)
        send_fences(self.transport, sends & set(self.members), self.dropped)
        waiting = set(self.members)
        while waiting:
            message = self.mailbox.control(self.timeout, f"{', '.join(sorted(waiting))} to rewind")
            if (message.control or {}).get("type") == "rewound":  # else: a report of the aborted attempt
                waiting.discard(message.src)
        self.mailbox.clear_data()
        if self.saved is not None:
            self.saved.restore(self.executor)

    def _drop(self, node: str) -> None:
        """`node` is out of the run: no more heartbeats to it, nothing it sends is read.

        It is not told (a message queued to a dead node holds the transport's close for its
        connect timeout); one that still lives gives up at its own phase timeout.
        """
        self.members.remove(node)
        self.dropped.append(node)
        self.heartbeat.remove(node)
        self.mailbox.forget(node)

    # -- helpers ---------------------------------------------------------------------------
    def _reach(self, node: str, address: str) -> None:
        """Fail at once, naming the address, when `node` joined from an address this node cannot reach."""
        if not address or self.transport.implicit_peers:
            return
        why = probe(address, min(self.timeout, CONNECT_S))
        if why is not None:
            raise RuntimeError(f"{node} advertises {address}, where {self.name} cannot reach it ({why}); start {node} "
                               f"with --advertise HOST, an address of its machine that {self.name} can reach")

    def _expect(self, message: Message, kind: str) -> dict:
        """The body of a `kind` report; another report fails its sender (RemoteFailure), not the run."""
        body = message.control or {}
        if body.get("type") != kind:
            raise RemoteFailure(message.src, f"sent '{body.get('type')}' when {self.name} expected '{kind}'")
        return body

    def _reports(self, waiting_for: str) -> Iterator[Message]:
        """One report from each member; a second from the same node before the others fails that node."""
        waiting = set(self.members)
        while waiting:
            message = self.mailbox.control(self.timeout, waiting_for)
            if message.src not in waiting:
                raise RemoteFailure(message.src, f"sent '{(message.control or {}).get('type')}' twice while "
                                                 f"{self.name} waited for {waiting_for}")
            waiting.discard(message.src)
            yield message

    def _broadcast(self, body: dict) -> None:
        """Best effort: a node that is gone cannot be told."""
        for member in self.members:
            if member in self.addresses or self.transport.implicit_peers:
                try:
                    self.transport.send_control(member, body)
                except Exception as exc:  # noqa: BLE001 - keep telling the others
                    log.debug("%s: could not send %s to %s: %s", self.name, body["type"], member, exc)
