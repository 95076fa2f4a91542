"""The one run loop: the emulator, the predictor, calibration and the real coordinator all drive it.

    for each epoch:
      for each segment (the whole epoch, or `segment_steps` mini-batches at a time):
        (1) build the segment's programs from the current plan (the technique's record)
        (2) the engine runs them and returns spans (time 0 = the segment's start)
        (3) spans move onto the epoch's clock: a segment starts when the previous one ended
        (4) the controller may change the plan at this boundary (a node dropped, a new
            partition); the engine moves the weights the new plan needs; an event is logged
      (5) the epoch's metrics from its spans, plus what the engine measured (loss, accuracy)

The loop knows nothing of tensors, clocks or networks: an Engine does the work, so a backend
that runs nodes' compute elsewhere (other processes, other machines) plugs in unchanged.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Protocol

from splitpipe.plan import Plan, steps_per_epoch
from splitpipe.schedules import Segment, build_schedule
from splitpipe.schedules.ir import Schedule
from splitpipe.span import Span
from splitpipe.trace import epoch_metrics

__all__ = ["Engine", "PlanChange", "Controller", "LoopResult", "run_loop", "epoch_row"]


class Engine(Protocol):
    """Runs segments' programs; the loop decides which and when."""

    def run_segment(self, plan: Plan, schedule: Schedule, segment: Segment) -> list[Span]:
        """Run every program of `schedule`; spans on the segment's clock (0 = its start)."""
        ...

    def finish_epoch(self, plan: Plan, schedule: Schedule, epoch: int) -> dict[str, object]:
        """After an epoch's last segment: what the engine measured (loss, accuracy, ...)."""
        ...

    def adopt(self, old: Plan, new: Plan, owners: Mapping[int, int]) -> None:
        """Carry the weights (and optimizer state) of `old`'s replicas over to `new`'s.

        `owners` maps each surviving data owner of `old` to its index in `new`.
        """
        ...


@dataclass(frozen=True)
class PlanChange:
    """A new plan from a segment boundary on, and why (logged as an event in the report)."""

    plan: Plan
    reason: str
    owners: Mapping[int, int] | None = None
    """Old owner -> new owner; None: the owners are unchanged."""


Controller = Callable[[Plan, Segment], PlanChange | None]
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
) -> LoopResult:
    """Run `epochs` of `plan` on `engine`; segments of `segment_steps` mini-batches (None: whole epochs)."""
    if segment_steps is not None and segment_steps < 1:
        raise ValueError(f"segment steps must be >= 1, got {segment_steps}")
    result = LoopResult([], [], plan)
    for epoch in epochs:
        nodes, links = _resources(result.plan)
        epoch_spans: list[Span] = []
        offset, start = 0.0, 0
        while True:
            segment = _segment(result.plan, epoch, start, segment_steps)
            schedule = build_schedule(result.plan, segment)  # (1)
            spans = engine.run_segment(result.plan, schedule, segment)  # (2)
            epoch_spans += [replace(s, start=s.start + offset, end=s.end + offset) for s in spans]  # (3)
            offset = max([offset, *(s.end for s in epoch_spans)])
            result.schedule = schedule
            change = controller(result.plan, segment) if controller is not None else None
            if change is not None:  # (4)
                owners = change.owners or {i: i for i in range(len(result.plan.owners))}
                engine.adopt(result.plan, change.plan, owners)
                result.events.append({"epoch": epoch, "step": segment.stop, "time_s": offset, "event": change.reason})
                result.plan = change.plan
            if segment.ends_epoch:
                break
            start = segment.stop  # type: ignore[assignment]
        row = epoch_row(epoch, epoch_spans, nodes, links)  # (5)
        row.update(engine.finish_epoch(result.plan, schedule, epoch))
        result.rows.append(row)
        result.spans += epoch_spans
        if progress is not None:
            progress(epoch, row)
    return result


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
