"""The one run loop: the emulator, the predictor, calibration and the real coordinator all drive it.

    for each epoch:
      (0) nodes whose rejoin time has come are added back to the plan
      for each segment (the whole epoch, or `segment_steps` mini-batches at a time):
        (1) build the segment's programs from the current plan (the technique's record)
        (2) the engine runs them and returns spans (time 0 = the segment's start)
        (3) spans move onto the epoch's clock: a segment starts when the previous one ended
        (4) a node that died in the segment: the engine rewinds it, the technique re-plans
            over the survivors, the weights move, and the segment runs again (its lost time
            stays on the clock; the `failure` event is followed by `recovery` when the dead
            node held layers, once they are rebuilt, or `dropout` when it was a data owner,
            now out of FedAvg); owners that missed the round's deadline:
            the segment runs again with their updates left out of the average (same clock:
            they did the work)
        (5) the controller may change the plan at this boundary (a node dropped, a new
            partition), seeing the segment's spans; the engine moves the weights the new plan
            needs (moves over links take time on the clock); an event is logged
      (6) the epoch's metrics from its spans, plus what the engine measured (loss, accuracy)

The loop knows nothing of tensors, clocks or networks: an Engine does the work, so a backend
that runs nodes' compute elsewhere (other processes, other machines) plugs in unchanged.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Protocol

from splitpipe.engine.events import NodeFailed
from splitpipe.plan import Plan, steps_per_epoch
from splitpipe.schedules import Segment, build_schedule, technique
from splitpipe.schedules.fedavg import without_updates
from splitpipe.schedules.ir import Schedule
from splitpipe.span import Span
from splitpipe.trace import epoch_metrics

__all__ = ["Engine", "PlanChange", "Boundary", "Controller", "Faults", "LoopResult", "run_loop", "epoch_row"]


class Engine(Protocol):
    """Runs segments' programs; the loop decides which and when."""

    def run_segment(self, plan: Plan, schedule: Schedule, segment: Segment,
                    failures: Mapping[str, float] | None = None) -> list[Span]:
        """Run every program of `schedule`; spans on the segment's clock (0 = its start).

        `failures`: node -> time on that clock at which it dies; NodeFailed if one did.
        """
        ...

    def mark(self) -> None:
        """Remember the training state at a segment's start (before one that may fail)."""
        ...

    def rewind(self) -> None:
        """Go back to the state of the last mark."""
        ...

    def finish_epoch(self, plan: Plan, schedule: Schedule, epoch: int) -> dict[str, object]:
        """After an epoch's last segment: what the engine measured (loss, accuracy, ...)."""
        ...

    def adopt(self, old: Plan, new: Plan, owners: Mapping[int, int]) -> list[Span] | None:
        """Carry the weights (and optimizer state) of `old`'s replicas over to `new`'s.

        `owners` maps each surviving data owner of `old` to its index in `new`. Returns the
        spans of weights moved over links (time 0 = the change), if the move takes time.
        """
        ...


@dataclass(frozen=True)
class PlanChange:
    """A new plan from a segment boundary on, and why (logged as an event in the report)."""

    plan: Plan
    reason: str
    owners: Mapping[int, int] | None = None
    """Old owner -> new owner; None: the owners are unchanged."""
    details: Mapping[str, object] = field(default_factory=dict)
    """More fields for the event (what was measured, what the change should gain)."""


@dataclass(frozen=True)
class Boundary:
    """Where a controller is asked: the run's clock there, and the segment's spans (on the run's clock)."""

    time_s: float
    spans: list[Span]


Controller = Callable[[Plan, Segment, Boundary], PlanChange | None]


@dataclass(frozen=True)
class Faults:
    """Scripted faults on the run's clock (seconds since the run began, epochs end to end):
    `fail` kills a node then; `rejoin` brings a dead one back at the next epoch boundary after
    (`joined` asks a real run's coordinator which came back);
    an owner whose round's training ends `deadline` seconds or more after the round's epoch began
    is left out of that round's average (and takes part again in the next)."""

    fail: Mapping[str, float] = field(default_factory=dict)
    rejoin: Mapping[str, float] = field(default_factory=dict)
    deadline: float | None = None
    joined: Callable[[list[str]], list[str]] | None = None
    """Real runs: which of the dead nodes (given) have come back, asked at each epoch boundary."""
    dead: tuple[str, ...] = ()
    """Nodes dead before the first epoch (a run resumed from a checkpoint written after they died):
    the loop starts on the plan without them; `rejoin` or `joined` may bring them back."""
    missed: Callable[[], list[int]] | None = None
    """Real runs: the owners the aggregators left out at the deadline as they ran (the segment is not re-run)."""


Progress = Callable[[int, dict[str, object]], None]


@dataclass
class LoopResult:
    """One row of metrics per epoch, every span, the plan at the end, and the plan changes."""

    rows: list[dict[str, object]]
    spans: list[Span]
    plan: Plan
    events: list[dict[str, object]] = field(default_factory=list)
    schedule: Schedule | None = None
    """The last segment's programs (their replicas make up the global model)."""


def run_loop(
    plan: Plan,
    engine: Engine,
    epochs: range,
    *,
    segment_steps: int | None = None,
    controller: Controller | None = None,
    progress: Progress | None = None,
    faults: Faults | None = None,
    events: list[dict[str, object]] | None = None,
) -> LoopResult:
    """Run `epochs` of `plan` on `engine`; segments of `segment_steps` mini-batches (None: whole epochs).

    `events`: the list the run's events are added to (a resumed run's earlier ones first), so that
    a checkpoint written between epochs holds them.
    """
    if segment_steps is not None and segment_steps < 1:
        raise ValueError(f"segment steps must be >= 1, got {segment_steps}")
    faults = faults or Faults()
    pending, dead = dict(faults.fail), set(faults.dead)
    result, clock = LoopResult([], [], _without(plan, dead, "resumed").plan, [] if events is None else events), 0.0
    for epoch in epochs:
        back = sorted(n for n in dead if faults.rejoin.get(n, float("inf")) <= clock)
        if faults.joined is not None and dead:
            back = sorted({*back, *faults.joined(sorted(dead))})
        epoch_spans: list[Span] = []
        offset, start = 0.0, 0
        if back:  # (0)
            dead -= set(back)
            epoch_spans += _change(result, engine, _without(plan, dead, f"{', '.join(back)} rejoined"),
                                   {"epoch": epoch, "step": 0, "time_s": 0.0, "event": "rejoin", "nodes": back})
            offset = max([offset, *(s.end for s in epoch_spans)])
        nodes, links = _resources(result.plan)
        missed: list[str] = []
        while True:
            segment = _segment(result.plan, epoch, start, segment_steps)
            schedule = build_schedule(result.plan, segment)  # (1)
            live = set(result.plan.topology.names)
            failures = {n: t - clock - offset for n, t in pending.items() if n in live}
            deadline = faults.deadline if segment.aggregates(result.plan) else None
            if failures or deadline is not None:
                engine.mark()
            try:
                spans = engine.run_segment(result.plan, schedule, segment, failures or None)  # (2)
            except NodeFailed as failed:  # (4)
                lost = _shifted(failed.spans, offset)
                epoch_spans += lost
                offset = max([offset, offset + failed.time_s, *(s.end for s in lost)])  # never back in time
                engine.rewind()
                pending.pop(failed.node, None)  # a real death was not scripted
                dead.add(failed.node)
                moved = _change(result, engine, _without(plan, dead, f"{failed.node} failed"),
                                {"epoch": epoch, "step": segment.start, "time_s": offset, "event": "failure",
                                 "nodes": [failed.node], "lost_steps": len({s.step for s in failed.spans
                                                                             if s.category == "forward"}),
                                 **({"detected": failed.detected} if failed.detected else {})}, offset)
                epoch_spans += moved
                offset = max([offset, *(s.end for s in moved)])
                failure = result.events[-1]
                # an owner is out of FedAvg from this round on (its in-flight work discarded); any
                # other node's layers were rebuilt from surviving copies
                kind = "dropout" if failed.node in plan.owners else "recovery"
                result.events.append({**failure, "time_s": offset, "event": kind})
                continue
            if deadline is None:
                late = []
            elif faults.missed is not None:  # a real run: left out as it ran
                late = faults.missed()
            else:
                late = _late(result.plan, spans, deadline - offset)
                if late:  # (4)
                    engine.rewind()
                    schedule = without_updates(schedule, late)
                    spans = engine.run_segment(result.plan, schedule, segment)
            if late:
                missed = [result.plan.owners[i] for i in late]
                result.events.append({"epoch": epoch, "step": segment.start, "time_s": deadline,
                                      "event": "deadline_miss", "nodes": missed})
            done = _shifted(spans, offset)  # (3)
            epoch_spans += done
            offset = max([offset, *(s.end for s in done)])
            result.schedule = schedule
            boundary = Boundary(clock + offset, _shifted(done, clock))
            change = controller(result.plan, segment, boundary) if controller is not None else None
            if change is not None:  # (5)
                moved = _change(result, engine, change, {"epoch": epoch, "step": segment.stop, "time_s": offset,
                                                         "event": change.reason, **change.details}, offset)
                epoch_spans += moved
                offset = max([offset, *(s.end for s in moved)])
            if segment.ends_epoch:
                break
            start = segment.stop  # type: ignore[assignment]
        row = epoch_row(epoch, epoch_spans, nodes, links)  # (6)
        row.update(engine.finish_epoch(result.plan, schedule, epoch))
        row["participants"] = [n for n in result.plan.owners if n not in missed]
        row["cuts"] = list(result.plan.cuts)
        result.rows.append(row)
        result.spans += epoch_spans
        clock += offset
        if progress is not None:
            progress(epoch, row)
    return result


def _late(plan: Plan, spans: list[Span], deadline: float) -> list[int]:
    """Owners whose last forward, backward or step ends after `deadline`; none if every owner is late."""
    ends: dict[int, float] = {}
    for s in spans:
        if s.category in ("forward", "backward", "step"):
            ends[s.owner] = max(ends.get(s.owner, 0.0), s.end)
    late = sorted(i for i, end in ends.items() if end > deadline and 0 <= i < len(plan.owners))
    return late if len(late) < len(plan.owners) else []


def _shifted(spans: list[Span], offset: float) -> list[Span]:
    return [replace(s, start=s.start + offset, end=s.end + offset) for s in spans]


def _without(original: Plan, dead: set[str], reason: str) -> PlanChange:
    """The original plan without the dead nodes, by the technique's own re-plan."""
    record = technique(original.technique)
    if not dead:
        return PlanChange(original, reason)
    lost = sorted(dead)
    droppable = set(original.owners) | {n.name for n in original.topology.nodes if n.role in record.droppable_roles}
    if record.replan is None or not set(lost) <= droppable:
        gone = ", ".join(lost)
        raise RuntimeError(f"{reason}: {original.technique} cannot go on without {gone}; "
                           "restart with --resume from the last checkpoint")
    plan, _ = record.replan(original, lost)
    return PlanChange(plan, reason)


def _change(result: LoopResult, engine: Engine, change: PlanChange, event: dict[str, object],
            offset: float = 0.0) -> list[Span]:
    """Switch to `change.plan`: the engine carries the weights over, the event is logged; the
    spans of weights moved over links, from `offset` on the epoch's clock."""
    old = result.plan
    owners = change.owners or {i: change.plan.owners.index(name) for i, name in enumerate(old.owners)
                                if name in change.plan.owners}
    moved = engine.adopt(old, change.plan, owners) or []
    result.events.append({**event, "cuts_before": list(old.cuts), "cuts_after": list(change.plan.cuts)})
    result.plan = change.plan
    return [replace(s, start=s.start + offset, end=s.end + offset, epoch=int(event["epoch"]))  # type: ignore[call-overload]
            for s in moved]


def epoch_row(epoch: int, spans: list[Span], nodes: list[str], links: list[str]) -> dict[str, object]:
    return {"epoch": epoch, **epoch_metrics(spans, nodes, links)}


def _resources(plan: Plan) -> tuple[list[str], list[str]]:
    topology = plan.topology
    return list(topology.names), [f"{a}->{b}" for a, b in topology.links]


def _segment(plan: Plan, epoch: int, start: int, steps: int | None) -> Segment:
    """The segment from step `start`: `steps` long, or to the end of the epoch if that comes first."""
    longest = max(steps_per_epoch(n, plan.batch_size) for n in plan.shard_sizes)
    stop = None if steps is None or start + steps >= longest else start + steps
    return Segment(epoch, start, stop)
