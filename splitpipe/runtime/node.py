"""NodeRunner: one node's lanes of one epoch's schedule, run in real time by the emulator's rule.

The node's lanes share its processor by the ready rule of engine/lanes.py, as in engine/events.py::

    loop:
      (1) file every message that has arrived (the transport stamped its arrival time)
      (2) run every Send and every Recv whose message is in, earliest-ready first
          (they take no processor time; a Recv makes its lane ready at the arrival)
      (3) run the one compute action whose lane became ready first (ties: lane order)
      (4) nothing to do: wait for the next message

With a round deadline (--round-deadline S), S seconds after the epoch began an aggregating node
leaves out of its averages the data owners whose updates (snapshots) have not reached it: their
Recvs are skipped, their late messages dropped as they come, the average renormalised over the
others (fedavg.left_out); their replicas here load the average only once their lanes are done
training. `missed` names them for the coordinator's report.

Spans are on this node's clock (time.time()). A compute span is measured around the action.
A link span is drawn by the receiver from the measured arrival: the transport's sender shapes
each link as the emulator does (begin = link free, busy bytes/bandwidth, then one latency in
flight), so the transfer ended one latency before the arrival and began bytes/bandwidth before
that. The coordinator moves every node's spans onto its own clock with the estimated offsets.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence

import torch

from splitpipe.engine.emulate import TensorExecutor
from splitpipe.engine.lanes import (
    Lane,
    compute_span,
    earliest_compute,
    make_lanes,
    next_transfer,
    transfer_span,
)
from splitpipe.engine.timing import MeasuredTiming
from splitpipe.plan import Topology
from splitpipe.runtime.mailbox import Mailbox, PeerLost, PhaseTimeout
from splitpipe.runtime.protocol import is_state_tag
from splitpipe.runtime.transport import Message, Transport, TransportError
from splitpipe.runtime.transport.base import payload_nbytes
from splitpipe.schedules.fedavg import left_out
from splitpipe.schedules.ir import (
    AGGREGATE,
    BACKWARD,
    FORWARD,
    LOAD,
    RECV,
    SEND,
    SNAPSHOT,
    STEP,
    Action,
    Schedule,
)
from splitpipe.setup import Setup, accelerated_nodes
from splitpipe.span import Span

__all__ = ["NodeRunner", "node_executor", "Speed", "SpeedClock", "anchor_speed", "speed_over_time"]

#: A node's speed against this host: fixed, or read at each compute action.
Speed = float | Callable[[], float]


class SpeedClock:
    """--speed-change in a real run: `base` until anchored, then each (T, speed) from T wall seconds on.

    The anchor is training's start (the first segment's agreed start, on this node's clock), so
    that T means the same on every node however long each process took to start and join.
    `clock` gives the time (time.time; injectable for tests).
    """

    def __init__(self, base: float, changes: Sequence[tuple[float, float]],
                 clock: Callable[[], float] = time.time) -> None:
        self.base, self.clock = base, clock
        self.changes = sorted(changes, reverse=True)
        self.started: float | None = None

    def anchor(self, at: float) -> None:
        """Start T's count at `at`; later calls (later segments, a rewound segment) keep the first."""
        if self.started is None:
            self.started = at

    def __call__(self) -> float:
        if self.started is None:
            return self.base
        elapsed = self.clock() - self.started
        return next((speed for at, speed in self.changes if at <= elapsed), self.base)


def speed_over_time(base: float, changes: Sequence[tuple[float, float]],
                    clock: Callable[[], float] = time.time) -> Speed:
    """`base`, then each (seconds, speed) of --speed-change from that many seconds after training starts."""
    return SpeedClock(base, changes, clock) if changes else base


def anchor_speed(speed: Speed, at: float) -> None:
    """Anchor `speed`'s --speed-change clock at `at` if it has one (a fixed speed has none)."""
    if isinstance(speed, SpeedClock):
        speed.anchor(at)


log = logging.getLogger("splitpipe.runtime")


def node_executor(setup: Setup, name: str) -> TensorExecutor:
    """A TensorExecutor holding only `name`'s replicas and data shards.

    --server-device places the same nodes on a GPU as in the emulator, if this machine has one.
    """
    config = setup.config
    devices = {}
    if config.server_device != "cpu" and name in accelerated_nodes(setup):
        device = torch.device(config.server_device)
        if device.type == "cuda" and not torch.cuda.is_available():
            log.warning("%s: --server-device %s asked for, but this machine has no GPU; using the CPU",
                        name, config.server_device)
        else:
            devices[name] = device
            log.info("%s: parts on %s", name, device)
    speeds = {n: 1.0 for n in setup.topology.names}
    return TensorExecutor(
        setup.model, setup.plan, setup.dataset, setup.shards, MeasuredTiming(speeds),
        lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay,
        seed=config.seed, node_devices=devices, node=name,
    )


class NodeRunner:
    """Runs `name`'s programs of one epoch with `executor`, talking through `mailbox`'s transport.

    `timeout` bounds how long the node may go without progress while it waits for a
    message. `speed` below 1 stretches each compute action to measured / speed, to stand
    in for a slower device when a whole cluster runs on one machine; a callable gives the
    speed of the moment (--speed-change). `deadline`: the round deadline in seconds, if any.
    """

    def __init__(self, name: str, schedule: Schedule, executor: TensorExecutor, mailbox: Mailbox,
                 topology: Topology, epoch: int, *, timeout: float = 600.0, speed: Speed = 1.0,
                 deadline: float | None = None) -> None:
        self.name = name
        self.programs = schedule.programs.get(name, {})
        self.executor = executor
        self.mailbox = mailbox
        self.transport: Transport = mailbox.transport
        self.topology = topology
        self.epoch = epoch
        self.timeout = timeout
        self.speed = speed
        self.spans: list[Span] = []
        self.missed: set[int] = set()
        """Data owners left out of this node's averages (their updates missed the round deadline)."""
        averages = any(a.op == AGGREGATE for program in self.programs.values() for a in program)
        self._deadline = deadline if averages else None
        self._backward: float | None = None  # when this node's last backward ended

    def run(self) -> list[Span]:
        """Run every lane to its end; return the node and link spans (on this node's clock)."""
        now = time.time()
        lanes = make_lanes({self.name: self.programs}, now)
        self._cutoff = None if self._deadline is None else now + self._deadline
        progress = now
        while any(ln.action is not None for ln in lanes):
            self.mailbox.drain()  # (1)
            if self._cutoff is not None and time.time() >= self._cutoff:
                self._leave_out_late(lanes)
            moved = self._communicate(lanes)  # (2)
            lane = earliest_compute([ln for ln in lanes if not self._waits_for_training(ln, lanes)])
            if lane is not None:
                self._compute(lane)  # (3)
            elif not moved:
                self._wait(lanes, progress)  # (4)
                continue
            progress = time.time()
        return self.spans + self._link_spans()

    # -- actions -------------------------------------------------------------------------
    def _communicate(self, lanes: Sequence[Lane]) -> bool:
        moved = False
        while (transfer := next_transfer(lanes, self._arrival)) is not None:
            ready, lane = transfer
            action = lane.action
            assert action is not None
            if action.op == SEND:
                self._send(action)
            else:
                self._receive(action)
            lane.advance(ready)
            moved = True
        return moved

    def _arrival(self, lane: Lane) -> float | None:
        if self._left_out(lane.action):  # skipped at once
            return lane.ready
        message = self.mailbox.data.get(lane.action.tag)  # type: ignore[union-attr,arg-type]
        return None if message is None else message.received_at

    # -- the round deadline --------------------------------------------------------------
    def _leave_out_late(self, lanes: Sequence[Lane]) -> None:
        """At the deadline: the owners whose snapshots have not come in are left out of this round's
        averages, unless an average already used their update (one owner is in all or none) or leaving
        them out would leave an average with no update at all (then all are waited for)."""
        self._cutoff = None
        used = {t.owner for ln in lanes for a in ln.program[:ln.pc] if a.op == AGGREGATE for t in a.reads}
        pending = {a.tag.owner for ln in lanes for a in ln.program[ln.pc:]  # type: ignore[union-attr]
                   if _snapshot_recv(a) and a.tag not in self.mailbox.data} - used
        averages = [a for ln in lanes for a in ln.program if a.op == AGGREGATE]
        if pending and all({t.owner for t in a.reads} - pending for a in averages):
            self.missed = pending
            log.info("%s: owner(s) %s missed the round deadline of epoch %d; left out of its average",
                     self.name, ", ".join(map(str, sorted(pending))), self.epoch)

    def _left_out(self, action: Action | None) -> bool:
        return action is not None and _snapshot_recv(action) and action.tag.owner in self.missed  # type: ignore[union-attr]

    def _waits_for_training(self, lane: Lane, lanes: Sequence[Lane]) -> bool:
        """A left-out owner's replica loads the average only after its own lanes' last training action."""
        action = lane.action
        if action is None or action.op != LOAD or action.owner not in self.missed:
            return False
        key = (action.part, action.replica)
        return any(a.op in TRAINING and (a.part, a.replica) == key
                   for other in lanes if other is not lane for a in other.program[other.pc:])

    def _send(self, action: Action) -> None:
        payload, _ = self.executor.send(self.name, action)
        assert action.tag is not None
        if action.peer == self.name:
            self.mailbox.file(Message(self.name, action.tag, payload, None, time.time()))  # type: ignore[arg-type]
        else:
            try:
                self.transport.send(action.peer, action.tag, payload)  # type: ignore[arg-type]
            except TransportError as exc:  # the coordinator decides whether the run goes on without it
                raise PeerLost(str(action.peer), str(exc)) from None

    def _receive(self, action: Action) -> None:
        if self._left_out(action):  # a late update: dropped now or when it comes
            self.mailbox.discard(action.tag)  # type: ignore[arg-type]
            return
        message = self.mailbox.data.pop(action.tag)  # type: ignore[arg-type]
        if message.src != action.peer:
            raise RuntimeError(f"{self.name} expected {action.tag} from {action.peer}, but {message.src} sent it")
        self.executor.receive(self.name, action, message.payload)

    def _compute(self, lane: Lane) -> None:
        action = lane.action
        assert action is not None
        start = time.time()
        if action.op == AGGREGATE and self.missed:
            action = left_out(action, self.missed)
        self.executor.compute(self.name, action)
        end = time.time()
        speed = self.speed() if callable(self.speed) else self.speed
        if speed < 1:
            time.sleep((end - start) * (1 / speed - 1))
            end = time.time()
        lane.advance(end)
        self.spans.append(compute_span(self.name, action, start, end, self.epoch))
        if action.op == BACKWARD:  # the batch time that a wait for a peer is measured against
            if self._backward is not None:
                self.mailbox.polls.pace.record(end - self._backward)
            self._backward = end

    def _wait(self, lanes: Sequence[Lane], progress: float) -> None:
        """(4) Wait for a message; a peer waited for too long is polled (liveness.Polls: PeerLost if it does not
        answer), and after `timeout` seconds without progress the epoch fails (PhaseTimeout)."""
        left = progress + self.timeout - time.time()
        if left <= 0:
            waits = "; ".join(f"lane {ln.lane} waits for {ln.action.tag} from {ln.action.peer}"  # type: ignore[union-attr]
                              for ln in lanes if ln.action is not None)
            raise PhaseTimeout(f"{self.name} made no progress in epoch {self.epoch} for {self.timeout:g} s: {waits}")
        if self.mailbox.poll(0):  # something came in just now (a message, an answer to a poll): look again
            return
        awaited = {str(a.peer): f"{a.tag}" for ln in lanes if (a := ln.action) is not None and a.op == RECV
                   and a.peer != self.name and not self._left_out(a) and a.tag not in self.mailbox.data}
        wait = min(left, self.mailbox.polls.check(awaited, progress))
        if self._cutoff is not None:  # wake at the round deadline
            wait = min(wait, max(0.0, self._cutoff - time.time()))
        self.mailbox.poll(wait)

    # -- link spans ----------------------------------------------------------------------
    def _link_spans(self) -> list[Span]:
        arrivals, self.mailbox.arrivals = self.mailbox.arrivals, []
        spans = []
        for message in arrivals:
            tag = message.tag
            if tag is None or is_state_tag(tag) or message.src == self.name:
                continue
            nbytes = payload_nbytes(message.payload)  # type: ignore[arg-type]
            link = self.topology.links.get((message.src, self.name))
            end = message.received_at - (link.latency_s if link else 0.0)
            start = end - (link.transfer_s(nbytes) if link else 0.0)
            label = Action(SEND, tag=tag).label
            spans.append(transfer_span(message.src, self.name, tag, start, end, self.epoch, nbytes, label))
        return spans



#: Actions that train or snapshot a replica (a left-out owner's replica loads the average after them).
TRAINING = frozenset({FORWARD, BACKWARD, STEP, SNAPSHOT})


def _snapshot_recv(action: Action) -> bool:
    """A Recv of a replica's snapshot for an average (FedAvg's `weights` messages)."""
    return action.op == RECV and action.tag is not None and action.tag.kind == "weights"
