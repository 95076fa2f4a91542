"""Split learning (vanilla): devices take turns; the device part travels from one device to
the next through the server, which keeps the one server part.

Devices 0..D-1, one epoch::

    device 0   : F0 .. B0 U0 .. | W(weights/0)                            .. L(weights/D-1)  (1) (2)
    device 1   :                  L(weights/0) F0 .. B0 U0 .. | W(weights/1)                 (2)
    server 0   :   F1 B1 U1 ..      F1 B1 U1 ..                                              (3)
    server -1  :              R S(weights/0 -> device 1)  ..  R S(weights/D-1 -> device 0)   (4)

(1) device i trains on its batches, then snapshots the device part; (2) the next device
loads it before its first forward, and the first device loads the last one's at the end;
(3) one server part, one lane for every device in turn; (4) devices have no link to each
other, so add_messages relays the handed-over weights through the server's lane -1.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from splitpipe.plan import Plan
from splitpipe.schedules.ir import (
    AGG_LANE,
    BACKWARD,
    FORWARD,
    LOAD,
    SNAPSHOT,
    STEP,
    Action,
    Replica,
    Schedule,
    Tag,
    programs_from_lists,
)
from splitpipe.schedules.messages import add_messages
from splitpipe.schedules.record import PlannerHook, Segment, Technique, drop_owners
from splitpipe.schedules.split import check_two_parts
from splitpipe.schedules.star import split_cut, star_plan
from splitpipe.schedules.steps import owner_steps
from splitpipe.schedules.validate import validate

if TYPE_CHECKING:
    import numpy as np

    from splitpipe.config import RunConfig

__all__ = ["build_sl", "TECHNIQUE"]


def build_sl(plan: Plan, segment: Segment) -> Schedule:
    check_two_parts(plan)
    epoch = segment.epoch
    server, owners = plan.server, plan.owners
    lists: dict[tuple[str, int], list[Action]] = {}
    srv = lists.setdefault((server, 0), [])
    last = len(owners) - 1
    for i, device in enumerate(owners):
        dev = lists.setdefault((device, i), [])
        if i > 0:  # (2) take over the device part from the previous device
            dev.append(Action(LOAD, owner=i, replica=i, reads=(Tag("weights", i - 1, 0, epoch),)))
        for step, sizes in owner_steps(plan, i, 1, segment):
            n = sizes[0]
            act, label = Tag("act", i, 0, step), Tag("label", i, 0, step)
            dev.append(Action(FORWARD, owner=i, replica=i, step=step, samples=n,
                              reads=(Tag("data", i, 0, step),), writes=(act, label)))
            srv.append(Action(FORWARD, part=1, owner=i, replica=0, step=step, samples=n,  # (3)
                              reads=(act, label), writes=(Tag("loss", i, 1, step),)))
            srv.append(Action(BACKWARD, part=1, owner=i, replica=0, step=step, samples=n,
                              writes=(Tag("grad", i, 1, step),)))
            srv.append(Action(STEP, part=1, owner=i, replica=0, step=step, samples=n))
            dev.append(Action(BACKWARD, owner=i, replica=i, step=step, samples=n, reads=(Tag("grad", i, 1, step),)))
            dev.append(Action(STEP, owner=i, replica=i, step=step, samples=n))
        if last > 0:  # (1)
            dev.append(Action(SNAPSHOT, owner=i, replica=i, writes=(Tag("weights", i, 0, epoch),)))
    if last > 0:  # (2) the first device starts the next epoch from the last device's part
        lists[(owners[0], 0)].append(Action(LOAD, owner=0, replica=0, reads=(Tag("weights", last, 0, epoch),)))
    replicas = tuple(Replica(d, 0, i) for i, d in enumerate(owners)) + (Replica(server, 1, 0),)
    return validate(Schedule(
        programs=add_messages(programs_from_lists(lists), plan.topology.links, relay=(server, AGG_LANE)),  # (4)
        replicas=replicas,
        evaluate={0: ((Replica(owners[0], 0, 0), 1.0),), 1: ((Replica(server, 1, 0), 1.0),)},
        owners=dict(enumerate(owners)),
    ))


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
