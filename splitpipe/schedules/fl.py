"""Federated learning: the whole model on every device, FedAvg at the server."""

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
from splitpipe.schedules.record import Segment, Technique, drop_owners
from splitpipe.schedules.star import star_plan
from splitpipe.schedules.steps import owner_steps
from splitpipe.schedules.validate import validate

if TYPE_CHECKING:
    import numpy as np

    from splitpipe.config import RunConfig

__all__ = ["build_fl", "TECHNIQUE"]


def check_fl(plan: Plan) -> None:
    if plan.parts != 1:
        raise ValueError(f"fl trains the whole model on each device: use no cuts, got cuts {plan.cuts}")


def build_fl(plan: Plan, segment: Segment) -> Schedule:
    """Device i, one mini-batch: F (reads its data, writes the loss), B, U; then FedAvg."""
    check_fl(plan)
    lists: dict[tuple[str, int], list[Action]] = {}
    weights = plan.fedavg_weights()
    members, evaluate = [], []
    for i, device in enumerate(plan.owners):
        program = lists.setdefault((device, i), [])
        for step, sizes in owner_steps(plan, i, 1, segment):
            n = sizes[0]
            program.append(Action(FORWARD, owner=i, replica=i, step=step, samples=n,
                                  reads=(Tag("data", i, 0, step),), writes=(Tag("loss", i, 0, step),)))
            program.append(Action(BACKWARD, owner=i, replica=i, step=step, samples=n))
            program.append(Action(STEP, owner=i, replica=i, step=step, samples=n))
        members.append(Member(device, i, i, 0, i, weights[i]))
        evaluate.append((Replica(device, 0, i), weights[i]))
    if segment.aggregates(plan):
        fedavg(lists, members, plan.server, segment.epoch)
    return validate(Schedule(
        programs=add_messages(programs_from_lists(lists), plan.topology.links),
        replicas=tuple(r for r, _ in evaluate),
        evaluate={0: tuple(evaluate)},
        owners=dict(enumerate(plan.owners)),
    ))


def make_plan(config: RunConfig, labels: np.ndarray, num_units: int) -> tuple[list[np.ndarray], Plan]:
    return star_plan("fl", config, labels, num_units, ())


TECHNIQUE = Technique(
    name="fl",
    summary="federated learning: the whole model on each device, FedAvg (weighted by samples) at the server",
    build=build_fl,
    make_plan=make_plan,
    check=check_fl,
    roles=("server", "device"),
    accelerated_roles=frozenset({"server"}),
    replan=drop_owners,
)
