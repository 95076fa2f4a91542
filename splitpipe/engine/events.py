"""The event engine: runs a Schedule's programs on a virtual clock.

Each node has one processor; its lanes share it. Links are FIFO channels booked by
splitpipe/linkbook.py (the runtime's shaper books them the same way): a transfer starts
when its channel is free, holds it for its bytes on the wire (payload and headers) at the
line rate, arrives one latency later, and its ACKs take their turn on the reverse channel,
between the segments of what is on it then. Since ACKs booked later may push a transfer, its
arrival is read from its booking when a Recv asks, and link spans take their times at the end.
Actions are committed in global time order, and each
node picks among its lanes by the ready rule of engine/lanes.py, the rule a real node
(runtime/node.py) follows too. What an action *does* is the Executor's business.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Protocol

from splitpipe.engine.lanes import (
    Lane,
    compute_span,
    earliest_compute,
    make_lanes,
    next_transfer,
    transfer_span,
)
from splitpipe.linkbook import Booking, Channel, LinkBook
from splitpipe.plan import Topology
from splitpipe.schedules.ir import RECV, SEND, Action, Schedule, Tag
from splitpipe.span import Span

__all__ = ["Executor", "run_schedule", "ScheduleStuck", "NodeFailed"]


class NodeFailed(RuntimeError):
    """A node died at `time_s` (on the segment's clock) while it still had work; `spans` is what ran.
    `detected`: how a real run found out (runtime/liveness.py DETECTIONS); None when scripted."""

    def __init__(self, node: str, time_s: float, spans: list[Span], detected: str | None = None) -> None:
        super().__init__(f"node {node} failed at {time_s:.4g} s")
        self.node, self.time_s, self.spans, self.detected = node, time_s, spans, detected


class ScheduleStuck(RuntimeError):
    """No lane can progress although some have actions left (a deadlock in the programs)."""


class Executor(Protocol):
    """Does the work of actions and says how long (virtual seconds) compute took."""

    def compute(self, node: str, action: Action) -> float: ...

    def send(self, node: str, action: Action) -> tuple[object, int]:
        """Take the payload of a Send out of the node; return it with its size in bytes."""
        ...

    def receive(self, node: str, action: Action, payload: object) -> None: ...


@dataclass
class _Clock:
    node_free: dict[str, float] = field(default_factory=dict)
    links: LinkBook[Channel] = field(default_factory=LinkBook)
    inbox: dict[tuple[str, Tag], tuple[_Arrival, object]] = field(default_factory=dict)
    transfers: list[tuple[int, Booking]] = field(default_factory=list)   # link spans' index, booking

    def timed(self, spans: list[Span]) -> list[Span]:
        """`spans` with each link span's times as its booking has them now."""
        for i, booking in self.transfers:
            spans[i] = replace(spans[i], start=booking.begin, end=booking.end)
        return spans


@dataclass(frozen=True)
class _Arrival:
    """When a message is in: `at` itself, or one latency after its booking ends (which ACKs may push)."""

    at: float
    booking: Booking | None = None
    latency_s: float = 0.0

    @property
    def time(self) -> float:
        return self.at if self.booking is None else self.booking.end + self.latency_s


def run_schedule(
    schedule: Schedule,
    topology: Topology,
    executor: Executor,
    epoch: int = 0,
    on_action: Callable[[], None] | None = None,
    failures: Mapping[str, float] | None = None,
) -> list[Span]:
    """Execute every lane to completion; return the spans (time 0 = start of the epoch).

    `failures` (node -> time) makes a node die then: NodeFailed is raised when it would act
    again, with the spans so far; the run loop rewinds the segment and re-plans.
    """
    lanes = make_lanes(schedule.programs)
    by_node: dict[str, list[Lane]] = {}
    for ln in lanes:
        by_node.setdefault(ln.node, []).append(ln)
    clock = _Clock(node_free={n: 0.0 for n in schedule.programs})
    spans: list[Span] = []
    while True:
        chosen = _next(by_node, clock)
        if chosen is None:
            break
        start, lane = chosen
        if failures and start >= failures.get(lane.node, float("inf")):  # a dead node does nothing
            raise NodeFailed(lane.node, failures[lane.node], clock.timed(spans))
        _commit(lane, start, clock, topology, executor, spans, epoch)
        if on_action is not None:
            on_action()
    stuck = [ln for ln in lanes if ln.action is not None]
    if stuck:
        table = "\n".join(f"  {ln.node} lane {ln.lane}: waits at #{ln.pc} {ln.action}" for ln in stuck)
        raise ScheduleStuck(f"schedule is not progressing: {len(stuck)} lanes blocked\n{table}")
    return clock.timed(spans)


def _next(by_node: dict[str, list[Lane]], clock: _Clock) -> tuple[float, Lane] | None:
    """The action that starts first over all nodes; ties go to the lane ready first, then lane order.

    Each node offers the two its lanes' ready rule picks: its next Send or Recv (which starts
    when ready) and its earliest-ready compute (which starts when its processor is free too).
    """
    best: tuple[float, float, int] | None = None
    best_lane = None
    for node, lanes in by_node.items():
        candidates = []
        transfer = next_transfer(lanes, lambda ln: _arrival(clock, ln))
        if transfer is not None:
            candidates.append((transfer[0], transfer[0], transfer[1]))
        compute = earliest_compute(lanes)
        if compute is not None:
            candidates.append((max(compute.ready, clock.node_free[node]), compute.ready, compute))
        for start, ready, ln in candidates:
            key = (start, ready, ln.order)
            if best is None or key < best:
                best, best_lane = key, ln
    return None if best is None or best_lane is None else (best[0], best_lane)


def _arrival(clock: _Clock, lane: Lane) -> float | None:
    action = lane.action
    assert action is not None
    message = clock.inbox.get((lane.node, action.tag))  # type: ignore[arg-type]
    return None if message is None else message[0].time


def _commit(
    lane: Lane, start: float, clock: _Clock, topology: Topology, executor: Executor,
    spans: list[Span], epoch: int,
) -> None:
    action = lane.action
    assert action is not None
    node = lane.node
    if not action.is_compute and lane.holding and lane.pc + 1 == len(lane.program):
        # the lane ends here and frees its replicas (rule 3): compute held for them runs from now, as on a real node
        clock.node_free[node] = max(clock.node_free[node], start)
    if action.op == RECV:
        _, payload = clock.inbox.pop((node, action.tag))  # type: ignore[arg-type]
        executor.receive(node, action, payload)
        lane.advance(start)
    elif action.op == SEND:
        payload, nbytes = executor.send(node, action)
        arrival = _Arrival(start)
        if action.peer != node:
            link = topology.link(node, action.peer)
            booking = clock.links.book(topology.channel(node, action.peer), link, nbytes, start)
            arrival = _Arrival(start, booking, link.latency_s)
            back = topology.links.get((action.peer, node))
            if back is not None:
                clock.links.book_acks(topology.channel(action.peer, node), back, nbytes, arrival.time)
            tag = action.tag
            assert tag is not None
            clock.transfers.append((len(spans), booking))
            spans.append(transfer_span(node, action.peer, tag, booking.begin, booking.end, epoch, nbytes,
                                       action.label))
        inbox_key = (action.peer, action.tag)
        if inbox_key in clock.inbox:
            raise RuntimeError(f"message {action.tag} to {action.peer} sent twice")
        clock.inbox[inbox_key] = (arrival, payload)  # type: ignore[index]
        lane.advance(start)
    else:
        duration = executor.compute(node, action)
        end = start + duration
        clock.node_free[node] = end
        lane.advance(end)
        spans.append(compute_span(node, action, start, end, epoch))

