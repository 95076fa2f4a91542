"""Split federated learning (SFL v1) and PipeLearn: one device part, one server replica per device.

PipeLearn cuts each mini-batch into N micro-batches and pipelines them; SFL is the same
program with N = 1. Per device lane i and server lane i, one mini-batch::

    device i : F0.0 F0.1 .. F0.N-1 | B0.0 B0.1 .. B0.N-1 | U0      (1) forwards, (2) backwards
                 \\act  \\act           ^grad  ^grad
    server i :  F1.0 B1.0  F1.1 B1.1 ..                  | U1      (3) one micro-batch at a time

(1) each forward reads the owner's micro-batch and writes its activation and labels, which
add_messages sends at once, overlapping the next forward; (2) backwards read the returning
gradients in order; (3) the server's forward reads activation and labels and writes the
loss, its backward writes the gradient. Gradients accumulate; one step per mini-batch.

With several servers (sfl --servers M, star.scaled_star) owner i's server lane is on its
own server (star.owner_server) and FedAvg still runs at plan.server over every owner: the
server-side replicas are averaged across servers.

Each owner may have its own cut and micro-batch count (plan.owner_cuts,
plan.owner_micro_batches; the planner chooses them per device). Owners with different cuts
hold different part ids, so FedAvg cannot average "part 0" across them; it averages each
*unit* over all owners instead, taking it from the device part or the server replica,
whichever holds it in that owner's lane: the FedAvg of whole models (device part + its
server replica) that the paper describes, which is the same thing when the cuts agree.
"""

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
from splitpipe.schedules.record import Segment
from splitpipe.schedules.star import owner_server
from splitpipe.schedules.steps import owner_steps
from splitpipe.schedules.validate import validate

__all__ = ["build_split", "check_two_parts"]


def check_two_parts(plan: Plan) -> None:
    if plan.parts != 2:
        raise ValueError(
            f"{plan.technique} splits the model into 2 parts (one cut), got cuts {plan.cuts}"
        )


def build_split(plan: Plan, segment: Segment, micro_batches: int | None = None) -> Schedule:
    """`micro_batches` None: each owner's own count (plan.owner_micro_batches)."""
    check_two_parts(plan)
    lists: dict[tuple[str, int], list[Action]] = {}
    members, replicas = [], []
    evaluate: dict[int, list[tuple[Replica, float]]] = {}
    weights = plan.fedavg_weights()
    for i, device in enumerate(plan.owners):
        server = owner_server(plan, i)
        dev = lists.setdefault((device, i), [])
        srv = lists.setdefault((server, i), [])
        p0, p1 = plan.owner_part(i, 0), plan.owner_part(i, 1)  # part ids of this owner's cut
        for step, sizes in owner_steps(plan, i, micro_batches, segment):
            for mb, n in enumerate(sizes):  # (1)
                dev.append(Action(FORWARD, part=p0, owner=i, replica=i, step=step, mb=mb, samples=n,
                                  reads=(Tag("data", i, 0, step, mb),),
                                  writes=(Tag("act", i, p0, step, mb), Tag("label", i, 0, step, mb))))
            for mb, n in enumerate(sizes):  # (3)
                srv.append(Action(FORWARD, part=p1, owner=i, replica=i, step=step, mb=mb, samples=n,
                                  reads=(Tag("act", i, p0, step, mb), Tag("label", i, 0, step, mb)),
                                  writes=(Tag("loss", i, p1, step, mb),)))
                srv.append(Action(BACKWARD, part=p1, owner=i, replica=i, step=step, mb=mb, samples=n,
                                  writes=(Tag("grad", i, p1, step, mb),)))
            srv.append(Action(STEP, part=p1, owner=i, replica=i, step=step))
            for mb, n in enumerate(sizes):  # (2)
                dev.append(Action(BACKWARD, part=p0, owner=i, replica=i, step=step, mb=mb, samples=n,
                                  reads=(Tag("grad", i, p1, step, mb),)))
            dev.append(Action(STEP, part=p0, owner=i, replica=i, step=step))
        for part, node in ((p0, device), (p1, server)):
            replica = Replica(node, part, i)
            replicas.append(replica)
            evaluate.setdefault(part, []).append((replica, weights[i]))
            members.append(Member(node, i, i, part, i, weights[i]))
    if segment.aggregates(plan):
        fedavg(lists, members, plan.server, segment.epoch, plan.part_units() if len(plan.layouts()) > 1 else None)
    return validate(Schedule(
        programs=add_messages(programs_from_lists(lists), plan.topology.links),
        replicas=tuple(replicas),
        evaluate={p: tuple(v) for p, v in sorted(evaluate.items())},
        owners=dict(enumerate(plan.owners)),
    ))
