"""The event engine: runs a Schedule's programs on a virtual clock.

Each node has one processor; its lanes share it. Links are FIFO resources, one per
direction: a transfer starts when the link is free, holds it bytes/bandwidth seconds
and arrives one latency later. Actions are committed in global time order, so a
node's choice among ready lanes (the earliest arrival first) is the same as a real
node's would be. What an action *does* is the Executor's business.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from splitpipe.plan import Topology
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
    Tag,
)
from splitpipe.span import Span

__all__ = ["Executor", "run_schedule", "ScheduleStuck"]

NODE_CATEGORY = {FORWARD: "forward", BACKWARD: "backward", STEP: "step",
                 SNAPSHOT: "aggregate", AGGREGATE: "aggregate", LOAD: "aggregate"}
LINK_CATEGORY = {"act": "upload", "label": "upload", "grad": "download",
                 "weights": "aggregate", "avg": "aggregate"}


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
class _Lane:
    node: str
    lane: int
    program: tuple[Action, ...]
    order: int
    pc: int = 0
    ready: float = 0.0

    @property
    def action(self) -> Action | None:
        return self.program[self.pc] if self.pc < len(self.program) else None


@dataclass
class _Clock:
    node_free: dict[str, float] = field(default_factory=dict)
    link_free: dict[tuple[str, str], float] = field(default_factory=dict)
    inbox: dict[tuple[str, Tag], tuple[float, object]] = field(default_factory=dict)


def run_schedule(
    schedule: Schedule,
    topology: Topology,
    executor: Executor,
    epoch: int = 0,
    on_action: Callable[[], None] | None = None,
) -> list[Span]:
    """Execute every lane to completion; return the spans (time 0 = start of the epoch)."""
    lanes = [
        _Lane(node, lane, program, order)
        for order, (node, lane, program) in enumerate(
            (n, ln, p) for n, progs in schedule.programs.items() for ln, p in progs.items()
        )
    ]
    clock = _Clock(node_free={n: 0.0 for n in schedule.programs})
    spans: list[Span] = []
    while True:
        chosen = _next(lanes, clock)
        if chosen is None:
            break
        start, lane = chosen
        _commit(lane, start, clock, topology, executor, spans, epoch)
        if on_action is not None:
            on_action()
    stuck = [ln for ln in lanes if ln.action is not None]
    if stuck:
        table = "\n".join(f"  {ln.node} lane {ln.lane}: waits at #{ln.pc} {ln.action}" for ln in stuck)
        raise ScheduleStuck(f"schedule is not progressing: {len(stuck)} lanes blocked\n{table}")
    return spans


def _next(lanes: list[_Lane], clock: _Clock) -> tuple[float, _Lane] | None:
    """The action that starts first; ties go to the input that arrived first, then lane order."""
    best: tuple[float, float, int] | None = None
    best_lane = None
    for ln in lanes:
        action = ln.action
        if action is None:
            continue
        ready = ln.ready
        if action.op == RECV:
            message = clock.inbox.get((ln.node, action.tag))  # type: ignore[arg-type]
            if message is None:
                continue
            ready = max(ready, message[0])
            start = ready
        elif action.op == SEND:
            start = ready
        else:
            start = max(ready, clock.node_free[ln.node])
        key = (start, ready, ln.order)
        if best is None or key < best:
            best, best_lane = key, ln
    return None if best_lane is None else (best[0], best_lane)  # type: ignore[index]


def _commit(
    lane: _Lane, start: float, clock: _Clock, topology: Topology, executor: Executor,
    spans: list[Span], epoch: int,
) -> None:
    action = lane.action
    assert action is not None
    node = lane.node
    if action.op == RECV:
        _, payload = clock.inbox.pop((node, action.tag))  # type: ignore[arg-type]
        executor.receive(node, action, payload)
        lane.ready = start
    elif action.op == SEND:
        payload, nbytes = executor.send(node, action)
        arrival = start
        if action.peer != node:
            key = (node, action.peer)
            link = topology.link(*key)
            begin = max(start, clock.link_free.get(key, 0.0))
            end = begin + link.transfer_s(nbytes)
            clock.link_free[key] = end
            arrival = end + link.latency_s
            tag = action.tag
            assert tag is not None
            spans.append(Span(f"{node}->{action.peer}", LINK_CATEGORY[tag.kind], begin, end, epoch,
                              tag.owner, tag.part, tag.step, tag.mb, nbytes, action.label))
        inbox_key = (action.peer, action.tag)
        if inbox_key in clock.inbox:
            raise RuntimeError(f"message {action.tag} to {action.peer} sent twice")
        clock.inbox[inbox_key] = (arrival, payload)  # type: ignore[index]
        lane.ready = start
    else:
        duration = executor.compute(node, action)
        end = start + duration
        clock.node_free[node] = end
        lane.ready = end
        spans.append(Span(node, NODE_CATEGORY[action.op], start, end, epoch, action.owner,
                          action.part, action.step, action.mb, 0, action.label))
    lane.pc += 1

