"""SplitFed v2: devices in parallel, one server-side model shared by all of them, trained on each
device's activations in turn as they arrive; FedAvg of the device parts only.

Device i, one mini-batch, and the server's lane for device i::

    device i : F0 ................ B0 U0                (1) forward, (4) backward and step
                 \\act,label        ^grad
    server i :    F1 B1 U1                              (2) (3) the shared part, one batch at a time

(1) the device's forward reads its batch and writes the activation and labels; (2) the
server's lane for that device runs the shared part (replica 0) forward and backward as soon
as the activation is in, and (3) steps at once, so the next device's batch sees the updated
weights; the lane model's rule (3) holds the shared replica from that forward to that step,
so batches that arrive meanwhile wait their turn instead of mixing gradients; (4) the
device's backward reads the gradient. (5) Every aggregation interval the device parts are
averaged, sample-weighted; the server part is already one model.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from splitpipe.plan import Plan
from splitpipe.schedules.fedavg import Member, fedavg
from splitpipe.schedules.ir import (
    BACKWARD,
    FORWARD,
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

__all__ = ["build_sfl2", "TECHNIQUE"]

#: The one copy of the server part, shared by every device's lane.
SHARED = 0


def build_sfl2(plan: Plan, segment: Segment) -> Schedule:
    check_two_parts(plan)
    server, weights = plan.server, plan.fedavg_weights()
    lists: dict[tuple[str, int], list[Action]] = {}
    members, device_parts = [], []
    for i, device in enumerate(plan.owners):
        dev = lists.setdefault((device, i), [])
        srv = lists.setdefault((server, i), [])
        for step, (n,) in owner_steps(plan, i, 1, segment):
            act, label, grad = Tag("act", i, 0, step), Tag("label", i, 0, step), Tag("grad", i, 1, step)
            dev.append(Action(FORWARD, part=0, owner=i, replica=i, step=step, samples=n,  # (1)
                              reads=(Tag("data", i, 0, step),), writes=(act, label)))
            srv.append(Action(FORWARD, part=1, owner=i, replica=SHARED, step=step, samples=n,  # (2)
                              reads=(act, label), writes=(Tag("loss", i, 1, step),)))
            srv.append(Action(BACKWARD, part=1, owner=i, replica=SHARED, step=step, samples=n, writes=(grad,)))
            srv.append(Action(STEP, part=1, owner=i, replica=SHARED, step=step))  # (3)
            dev.append(Action(BACKWARD, part=0, owner=i, replica=i, step=step, samples=n, reads=(grad,)))  # (4)
            dev.append(Action(STEP, part=0, owner=i, replica=i, step=step))
        device_parts.append((Replica(device, 0, i), weights[i]))
        members.append(Member(device, i, i, 0, i, weights[i]))
    if segment.aggregates(plan) and len(members) > 1:  # (5)
        fedavg(lists, members, server, segment.epoch)
    shared = Replica(server, 1, SHARED)
    return validate(Schedule(
        programs=add_messages(programs_from_lists(lists), plan.topology.links),
        replicas=(*(r for r, _ in device_parts), shared),
        evaluate={0: tuple(device_parts), 1: ((shared, 1.0),)},
        owners=dict(enumerate(plan.owners)),
    ))


def make_plan(config: RunConfig, labels: np.ndarray, num_units: int) -> tuple[list[np.ndarray], Plan]:
    return star_plan("sfl2", config, labels, num_units, split_cut(config, num_units))


TECHNIQUE = Technique(
    name="sfl2",
    summary="SplitFed v2: devices in parallel, one shared server-side model trained on each batch as it "
            "arrives, FedAvg of the device parts",
    build=build_sfl2,
    make_plan=make_plan,
    check=check_two_parts,
    roles=("server", "device"),
    accelerated_roles=frozenset({"server"}),
    planner=PlannerHook("split"),
    replan=drop_owners,
)
