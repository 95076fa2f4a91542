"""Split learning (vanilla): devices take turns; the device part travels from one device to
the next through the server, which keeps the one server part."""

from __future__ import annotations

from typing import TYPE_CHECKING

from splitpipe.plan import Plan
from splitpipe.schedules.ir import (
    AGG_LANE,
    BACKWARD,
    FORWARD,
    LOAD,
    RECV,
    SEND,
    SNAPSHOT,
    STEP,
    Action,
    Replica,
    Schedule,
    Tag,
    programs_from_lists,
)
from splitpipe.schedules.record import PlannerHook, Segment, Technique, drop_owners
from splitpipe.schedules.split import check_two_parts
from splitpipe.schedules.star import split_cut, star_plan
from splitpipe.schedules.steps import owner_steps

if TYPE_CHECKING:
    import numpy as np

    from splitpipe.config import RunConfig

__all__ = ["build_sl", "TECHNIQUE"]


def build_sl(plan: Plan, segment: Segment) -> Schedule:
    """One segment: each device in turn over its steps of the segment, then the hand-over."""
    check_two_parts(plan)
    epoch = segment.epoch
    server, owners = plan.server, plan.owners
    lists: dict[tuple[str, int], list[Action]] = {}
    srv = lists.setdefault((server, 0), [])
    relay = lists.setdefault((server, AGG_LANE), [])
    last = len(owners) - 1
    for i, device in enumerate(owners):
        dev = lists.setdefault((device, i), [])
        if i > 0:  # take over the device part from the previous device
            handed = Tag("weights", i - 1, 0, epoch)
            dev.append(Action(RECV, lane=i, peer=server, tag=handed))
            dev.append(Action(LOAD, lane=i, replica=i, tag=handed))
        for step, sizes in owner_steps(plan, i, 1, segment):
            n = sizes[0]
            dev.append(Action(FORWARD, lane=i, replica=i, step=step, samples=n))
            dev.append(Action(SEND, lane=i, peer=server, tag=Tag("act", i, 0, step), samples=n))
            dev.append(Action(SEND, lane=i, peer=server, tag=Tag("label", i, 0, step), samples=n))
            srv.append(Action(RECV, part=1, lane=i, peer=device, tag=Tag("act", i, 0, step), samples=n))
            srv.append(Action(RECV, part=1, lane=i, peer=device, tag=Tag("label", i, 0, step), samples=n))
            srv.append(Action(FORWARD, part=1, lane=i, replica=0, step=step, samples=n))
            srv.append(Action(BACKWARD, part=1, lane=i, replica=0, step=step, samples=n))
            srv.append(Action(SEND, part=1, lane=i, peer=device, tag=Tag("grad", i, 1, step), samples=n))
            srv.append(Action(STEP, part=1, lane=i, replica=0, step=step, samples=n))
            dev.append(Action(RECV, lane=i, peer=server, tag=Tag("grad", i, 1, step), samples=n))
            dev.append(Action(BACKWARD, lane=i, replica=i, step=step, samples=n))
            dev.append(Action(STEP, lane=i, replica=i, step=step, samples=n))
        done = Tag("weights", i, 0, epoch)
        dev.append(Action(SNAPSHOT, lane=i, replica=i, tag=done))
        dev.append(Action(SEND, lane=i, peer=server, tag=done))
        relay.append(Action(RECV, lane=AGG_LANE, peer=device, tag=done))
        successor = owners[i + 1] if i < last else owners[0]
        if successor != device:
            relay.append(Action(SEND, lane=AGG_LANE, peer=successor, tag=done))
    if last > 0:  # the first device starts the next epoch from the last device's part
        first = lists[(owners[0], 0)]
        handed = Tag("weights", last, 0, epoch)
        first.append(Action(RECV, lane=0, peer=server, tag=handed))
        first.append(Action(LOAD, lane=0, replica=0, tag=handed))
    replicas = tuple(Replica(d, 0, i) for i, d in enumerate(owners)) + (Replica(server, 1, 0),)
    return Schedule(
        programs=programs_from_lists(lists),
        replicas=replicas,
        evaluate={0: ((Replica(owners[0], 0, 0), 1.0),), 1: ((Replica(server, 1, 0), 1.0),)},
        data_lanes={(d, i): i for i, d in enumerate(owners)},
    )


def make_plan(config: RunConfig, labels: np.ndarray, num_units: int) -> tuple[list[np.ndarray], Plan]:
    return star_plan("sl", config, labels, num_units, split_cut(config, num_units))


TECHNIQUE = Technique(
    name="sl",
    summary="split learning: devices take turns; the device part travels from device to device",
    build=build_sl,
    make_plan=make_plan,
    check=check_two_parts,
    roles=("server", "device"),
    accelerated_roles=frozenset({"server"}),
    planner=PlannerHook("split"),
    replan=drop_owners,
)
