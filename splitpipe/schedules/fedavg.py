"""FedAvg as compute actions: owners and replicas snapshot their weights, an aggregator lane
averages them (sample-weighted) and the average is loaded back; the messages come from
messages.add_messages."""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Sequence
from dataclasses import dataclass, replace

from splitpipe.schedules.ir import AGG_LANE, AGGREGATE, LOAD, NO_OWNER, SNAPSHOT, Action, Schedule, Tag

__all__ = ["Member", "fedavg", "without_updates", "left_out"]


@dataclass(frozen=True)
class Member:
    """A replica taking part in averaging: it lives on `node`, runs in `lane`, trains on
    data owner `owner`'s batches and has `weight`."""

    node: str
    lane: int
    owner: int
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
    """Append to `lists` the compute actions that average each part over `members` at `aggregator`::

        member lane    : .. W(weights) ............... L(avg)     (1) snapshot, (3) load
        aggregator lane: ......... A(weights..) L(avg)            (2) average; local members load

    (1) every member snapshots its part in its own lane (a replica on the aggregator too, so
    the average waits for its last step); (2) the aggregator lane averages part by part;
    (3) remote members load the average in their lane, local ones in the aggregator lane;
    several members of a part on one remote node (another server's replicas) load it in that
    node's aggregation lane, so the average crosses to the node once.

    With `units` (part id -> unit range), parts of different ids may hold the same units
    (owners with different cuts): each part's average then reads every member that holds
    some of its units, with their raw weights (each key is averaged over the sources that
    hold it, weights renormalised). Member weights must sum to 1 over the members holding a unit.
    """
    agg = lists.setdefault((aggregator, AGG_LANE), [])
    by_part: dict[int, list[Member]] = {}
    for m in members:
        by_part.setdefault(m.part, []).append(m)
    for part, group in sorted(by_part.items()):  # (1)
        for m in group:
            lists.setdefault((m.node, m.lane), []).append(Action(
                SNAPSHOT, part=part, owner=m.owner, replica=m.replica, writes=(_weights(m, epoch),)))
    for part, group in sorted(by_part.items()):  # (2)
        if units is None:
            holders = group
            total = sum(m.weight for m in group)
            weights = tuple(m.weight / total for m in group)
        else:
            holders = [m for m in members if _overlap(units[m.part], units[part])]
            weights = tuple(m.weight for m in holders)
        average = Tag("avg", NO_OWNER, part, epoch)
        agg.append(Action(AGGREGATE, part=part, owner=NO_OWNER, reads=tuple(_weights(m, epoch) for m in holders),
                          writes=(average,), weights=weights))
        on_node = Counter(m.node for m in group)
        for m in group:  # (3)
            load = Action(LOAD, part=part, owner=m.owner, replica=m.replica, reads=(average,))
            if m.node != aggregator:
                lists.setdefault((m.node, AGG_LANE if on_node[m.node] > 1 else m.lane), []).append(load)
        agg.extend(Action(LOAD, part=part, owner=m.owner, replica=m.replica, reads=(average,))
                   for m in group if m.node == aggregator)


def _weights(m: Member, epoch: int) -> Tag:
    return Tag("weights", m.owner, m.part, epoch)


def _overlap(a: range, b: range) -> bool:
    return max(a.start, b.start) < min(a.stop, b.stop)


def without_updates(schedule: Schedule, owners: Collection[int]) -> Schedule:
    """`schedule` with the updates of data owners `owners` left out of every average (weight 0,
    the others' renormalised); they still load the average. An average no other owner feeds
    is left as it was."""
    programs = {node: {lane: tuple(_without(a, owners) for a in actions) for lane, actions in lanes.items()}
                for node, lanes in schedule.programs.items()}
    return replace(schedule, programs=programs)


def left_out(action: Action, owners: Collection[int]) -> Action:
    """Average `action` without the reads of data owners `owners` (their updates never came: a real
    run's round deadline), the others' weights renormalised as by without_updates; unchanged if no
    other owner feeds it."""
    kept = _without(action, owners)
    if kept is action:
        return action
    pairs = [(tag, w) for tag, w in zip(kept.reads, kept.weights) if tag.owner not in owners]
    return replace(kept, reads=tuple(tag for tag, _ in pairs), weights=tuple(w for _, w in pairs))


def _without(action: Action, owners: Collection[int]) -> Action:
    if action.op != AGGREGATE:
        return action
    weights = [0.0 if tag.owner in owners else w for tag, w in zip(action.reads, action.weights)]
    total = sum(weights)
    if total <= 0:
        return action
    scale = sum(action.weights) / total  # raw weights (owners with different cuts) keep their sum
    return replace(action, weights=tuple(w * scale for w in weights))
