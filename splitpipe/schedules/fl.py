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
    programs_from_lists,
)
from splitpipe.schedules.steps import owner_steps

__all__ = ["build_fl"]


def build_fl(plan: Plan, epoch: int) -> Schedule:
    if plan.parts != 1:
        raise ValueError(f"fl trains the whole model on each device: use no cuts, got cuts {plan.cuts}")
    lists: dict[tuple[str, int], list[Action]] = {}
    weights = plan.fedavg_weights()
    members, evaluate = [], []
    for i, device in enumerate(plan.owners):
        program = lists.setdefault((device, i), [])
        for step, sizes in owner_steps(plan, i, 1):
            n = sizes[0]
            program.append(Action(FORWARD, lane=i, replica=i, step=step, samples=n))
            program.append(Action(BACKWARD, lane=i, replica=i, step=step, samples=n))
            program.append(Action(STEP, lane=i, replica=i, step=step, samples=n))
        members.append(Member(device, i, 0, i, weights[i]))
        evaluate.append((Replica(device, 0, i), weights[i]))
    if plan.aggregates_after(epoch):
        fedavg(lists, members, plan.server, epoch)
    return Schedule(
        programs=programs_from_lists(lists),
        replicas=tuple(r for r, _ in evaluate),
        evaluate={0: tuple(evaluate)},
        data_lanes={(d, i): i for i, d in enumerate(plan.owners)},
    )
