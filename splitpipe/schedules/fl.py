"""Federated learning: the whole model on every device, FedAvg at the server."""

from __future__ import annotations

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
from splitpipe.schedules.steps import owner_steps
from splitpipe.schedules.validate import validate

__all__ = ["build_fl"]


def build_fl(plan: Plan, epoch: int) -> Schedule:
    """Device i, one mini-batch: F (reads its data, writes the loss), B, U; then FedAvg."""
    if plan.parts != 1:
        raise ValueError(f"fl trains the whole model on each device: use no cuts, got cuts {plan.cuts}")
    lists: dict[tuple[str, int], list[Action]] = {}
    weights = plan.fedavg_weights()
    members, evaluate = [], []
    for i, device in enumerate(plan.owners):
        program = lists.setdefault((device, i), [])
        for step, sizes in owner_steps(plan, i, 1):
            n = sizes[0]
            program.append(Action(FORWARD, owner=i, replica=i, step=step, samples=n,
                                  reads=(Tag("data", i, 0, step),), writes=(Tag("loss", i, 0, step),)))
            program.append(Action(BACKWARD, owner=i, replica=i, step=step, samples=n))
            program.append(Action(STEP, owner=i, replica=i, step=step, samples=n))
        members.append(Member(device, i, i, 0, i, weights[i]))
        evaluate.append((Replica(device, 0, i), weights[i]))
    if plan.aggregates_after(epoch):
        fedavg(lists, members, plan.server, epoch)
    return validate(Schedule(
        programs=add_messages(programs_from_lists(lists), plan.topology.links),
        replicas=tuple(r for r, _ in evaluate),
        evaluate={0: tuple(evaluate)},
        owners=dict(enumerate(plan.owners)),
    ))
