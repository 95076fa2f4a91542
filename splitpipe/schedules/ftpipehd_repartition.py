"""FTPipeHD's re-partition: stage capacities measured from the actions' own times, the DP re-run, layers moved.

Every `repartition_every` iterations the central node (a controller of the run loop) does::

    (1) stage s's seconds per iteration on its units, from its forward, backward and step spans
        since the last check; speed_s = the profile's seconds for those units at speed 1 / that,
        capacity_s = speed_s / speed_central (its time against the central node's on the same units)
    (2) each hop's bandwidth from the bytes and busy time its link measured (else the declared link)
    (3) the min-max DP over (1) and (2): new cuts and their bottleneck
    (4) switch when the new bottleneck is at least MIN_GAIN shorter (measured times jitter: a
        real run would otherwise chase its own noise from one near-tie to the next) and
        (old bottleneck - new) x iterations left > seconds to move the layers that change
        stage (their weights and momentum, hop by hop along the chain)

The move is real (`moves`, run by engine/move.py before training goes on): each moved unit's
state travels over the chain's links, on the timeline and in the links' bytes.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, cast

from splitpipe.network import LinkSpec
from splitpipe.plan import Plan, steps_per_epoch
from splitpipe.schedules.ftpipehd_replan import UNIT_BYTES, UNIT_S, dp_costs, stage_s
from splitpipe.schedules.record import Move, Segment

if TYPE_CHECKING:
    from splitpipe.loop import Boundary, PlanChange
    from splitpipe.span import Span

__all__ = ["Repartitioner", "moves", "measured_speeds", "measured_links"]

COMPUTE = ("forward", "backward", "step")
#: (4) the least relative gain of the bottleneck worth a change.
MIN_GAIN = 0.2


def stages(plan: Plan) -> list[str]:
    return [plan.owners[0], *plan.chain]


def measured_speeds(plan: Plan, spans: Sequence[Span]) -> list[float] | None:
    """(1) Each stage's speed against the profile (speed 1), from its own compute spans; None
    until every stage has finished a step."""
    unit_s = cast("Sequence[float]", plan.extra.get(UNIT_S) or (1.0,) * plan.num_units)
    busy: dict[str, float] = defaultdict(float)
    steps: dict[str, int] = defaultdict(int)
    for s in spans:
        if s.category in COMPUTE:
            busy[s.resource] += s.duration
            steps[s.resource] += s.category == "step"
    speeds = []
    for node, units in zip(stages(plan), plan.part_units()):
        if not steps[node] or busy[node] <= 0:
            return None
        speeds.append((sum(unit_s[u] for u in units) + stage_s(plan)) / (busy[node] / steps[node]))
    return speeds


def measured_links(plan: Plan, spans: Sequence[Span]) -> dict[tuple[str, str], LinkSpec]:
    """(2) The chain's links at the bandwidth they showed (bytes over busy time), latency as declared."""
    sent: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
    for s in spans:
        if s.is_link and s.bytes > 0 and s.duration > 0:
            sent[s.resource][0] += s.bytes
            sent[s.resource][1] += s.duration
    out = {}
    for (a, b), link in plan.topology.links.items():
        nbytes, seconds = sent.get(f"{a}->{b}", (0.0, 0.0))
        out[a, b] = LinkSpec(nbytes / seconds, link.latency_s) if nbytes > 0 else link
    return out


def moves(old: Plan, new: Plan, lost: Collection[str] = ()) -> list[Move]:
    """The units whose stage node changes, from their old node along `new`'s chain to their new one
    (a dead node's units come from recovery copies instead, engine/carry.py)."""
    old_at = _node_of_units(old)
    new_at = _node_of_units(new)
    chain = stages(new)
    grouped: dict[tuple[str, str], list[int]] = defaultdict(list)
    for unit, (src, dst) in enumerate(zip(old_at, new_at)):
        if src != dst and src not in lost and src in chain:
            grouped[src, dst].append(unit)
    out = []
    for (src, dst), units in grouped.items():
        a, b = chain.index(src), chain.index(dst)
        path = chain[a:b + 1] if a < b else chain[b:a + 1][::-1]
        out.append(Move(tuple(path), tuple(units), stages(old).index(src)))
    return out


def _node_of_units(plan: Plan) -> list[str]:
    return [node for node, units in zip(stages(plan), plan.part_units()) for _ in units]


def move_s(plan: Plan, todo: Sequence[Move], links: dict[tuple[str, str], LinkSpec]) -> float:
    """(4) Seconds to move: weights and momentum, each hop one after the other (an upper bound)."""
    unit_bytes = cast("Sequence[float]", plan.extra.get(UNIT_BYTES) or (0.0,) * plan.num_units)
    total = 0.0
    for move in todo:
        nbytes = 2 * sum(unit_bytes[u] for u in move.units)
        total += sum(links[a, b].transfer_s(int(nbytes)) + links[a, b].latency_s
                     for a, b in zip(move.path, move.path[1:]))
    return total


class Repartitioner:
    """The run loop's controller for FTPipeHD: every `every` iterations, (1)-(4)."""

    def __init__(self, plan: Plan, every: int, epochs: int) -> None:
        if every < 1:
            raise ValueError(f"repartition-every must be >= 1 to re-partition, got {every}")
        self.every = every
        self.per_epoch = steps_per_epoch(plan.shard_sizes[0], plan.batch_size)
        self.total = epochs * self.per_epoch
        self.window: list[Span] = []
        self.layout: tuple[object, ...] = ()
        self.checked = 0

    def __call__(self, plan: Plan, segment: Segment, boundary: Boundary) -> PlanChange | None:
        from splitpipe.loop import PlanChange  # the loop sits above the schedules
        from splitpipe.planner.ftpipehd_dp import bottleneck_of, partition_min_max

        if self.layout != (plan.chain, plan.cuts):  # measured on other parts: start again
            self.layout, self.window = (plan.chain, plan.cuts), []
        self.window += boundary.spans
        done = segment.epoch * self.per_epoch + (segment.stop or self.per_epoch)
        if done - self.checked < self.every:
            return None
        self.checked, spans, self.window = done, self.window, []
        speeds = measured_speeds(plan, spans)
        if speeds is None or len(plan.cuts) >= plan.num_units:
            return None
        links = measured_links(plan, spans)
        compute, hops, overhead = dp_costs(plan, speeds, links)  # (3)
        best = partition_min_max(compute, hops, overhead=overhead)
        now, _, _ = bottleneck_of(plan.cuts, compute, hops, overhead=overhead)
        if best.cuts == tuple(plan.cuts):
            return None
        new = replace(plan, cuts=best.cuts)
        cost = move_s(plan, moves(plan, new), links)
        gain = (now - best.bottleneck_s) * (self.total - done)
        if gain <= cost or best.bottleneck_s > (1 - MIN_GAIN) * now:  # (4)
            return None
        capacity = [round(s / speeds[0], 4) for s in speeds]
        return PlanChange(new, "repartition", details={
            "capacity": capacity, "bottleneck_s": [now, best.bottleneck_s], "gain_s": gain, "move_s": cost})
