"""FedAvg as actions: owners and replicas send weights to an aggregator lane, which averages
them (sample-weighted) and sends the result back."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from splitpipe.schedules.ir import AGG_LANE, AGGREGATE, LOAD, RECV, SEND, SNAPSHOT, Action, Tag

__all__ = ["Member", "fedavg"]


@dataclass(frozen=True)
class Member:
    """A replica taking part in averaging: it lives on `node`, runs in `lane` and has `weight`."""

    node: str
    lane: int
    part: int
    replica: int
    weight: float


def fedavg(
    lists: dict[tuple[str, int], list[Action]],
    members: Sequence[Member],
    aggregator: str,
    epoch: int,
    units: Sequence[range] | None = None,
) -> None:
    """Append to `lists` the actions that average each part over `members` at `aggregator`.

    Remote members snapshot, send, then wait for the average and load it. Replicas on the
    aggregator itself are snapshotted by their own lane (so the average waits for their
    last step) and loaded by the aggregator lane. Each part's average goes out as soon as
    it exists (3), and each average waits only for the weights it reads (2).

    With `units` (part id -> unit range), parts of different ids may hold the same units
    (owners with different cuts): each part's average then takes every unit from all the
    members that hold it, with their raw weights (the executor renormalises per tensor over
    the sources that hold it). Member weights must sum to 1 over the members holding a unit.
    """
    agg = lists.setdefault((aggregator, AGG_LANE), [])
    by_part: dict[int, list[Member]] = {}
    for m in members:
        by_part.setdefault(m.part, []).append(m)
    for part, group in sorted(by_part.items()):  # (1) snapshot and upload
        for m in group:
            tag = Tag("weights", m.lane, part, epoch)
            own = lists.setdefault((m.node, m.lane), [])
            own.append(Action(SNAPSHOT, part=part, lane=m.lane, replica=m.replica, tag=tag))
            own.append(Action(SEND, part=part, lane=m.lane, peer=aggregator, tag=tag))
    received: set[Tag] = set()
    for part, group in sorted(by_part.items()):
        if units is None:
            holders = group
            total = sum(m.weight for m in group)
            weights = tuple(m.weight / total for m in group)
        else:  # (1b) per unit, over every member that holds some of the part's units
            holders = [m for m in members if _overlap(units[m.part], units[part])]
            weights = tuple(m.weight for m in holders)
        sources = tuple(Tag("weights", m.lane, m.part, epoch) for m in holders)
        for m, tag in zip(holders, sources):  # (2) receive what this average needs, not yet received
            if tag not in received:
                received.add(tag)
                agg.append(Action(RECV, part=part, lane=AGG_LANE, peer=m.node, tag=tag))
        average = Tag("avg", AGG_LANE, part, epoch)
        agg.append(Action(AGGREGATE, part=part, lane=AGG_LANE, tag=average, sources=sources, weights=weights))
        for m in group:  # (3) hand the average back as soon as it exists
            if m.node != aggregator:
                agg.append(Action(SEND, part=part, lane=AGG_LANE, peer=m.node, tag=average))
                own = lists[(m.node, m.lane)]
                own.append(Action(RECV, part=part, lane=m.lane, peer=aggregator, tag=average))
                own.append(Action(LOAD, part=part, lane=m.lane, replica=m.replica, tag=average))
        for m in group:
            if m.node == aggregator:
                agg.append(Action(LOAD, part=part, lane=AGG_LANE, replica=m.replica, tag=average))


def _overlap(a: range, b: range) -> bool:
    return max(a.start, b.start) < min(a.stop, b.stop)
