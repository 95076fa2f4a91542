"""MP-SL: data owners keep the first and the last part; the middle parts sit on a chain of
compute nodes, one replica per owner, pipelined across owners.

Owner i, one mini-batch of N micro-batches, P parts, C = P - 2 compute nodes::

    device i   : F0.0 .. F0.N-1 |                  Fp.0 Bp.0 ..    | B0.0 .. B0.N-1 | U0 Up   (1) (4) (6)
                     \\act                        ^act     \\grad       ^grad
    compute0   :    F1.0 .. F1.N-1 ... B1.0 .. B1.N-1 | U1                                    (2) (5)
    ...                  \\act  ...  ^grad
    computeC-1 :        Fp-1.0 ..    Bp-1.0 ..  | Up-1                                          (3)

(1) the owner forwards part 0 of every micro-batch (writing activation and labels) and the
activation goes out at once; the labels stay in its store. (2) compute node j runs part j+1
in one lane per owner; when free it takes the ready task whose input arrived first (the
engine's rule), so the pipeline runs across owners. (3) the last compute node returns the
activation to the owner, which (4) runs part P-1 reading it and its own labels: labels are
written and read in the owner's lane, so add_messages never sends one. (5) gradients flow
back the same way; (6) one optimizer step per mini-batch and replica.
(7) every aggregation interval each compute node averages its replicas locally and the
aggregator node averages the owners' first and last parts, sample-weighted.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from splitpipe.data.partition import partition
from splitpipe.models.split import check_cuts, even_cuts
from splitpipe.network import PROFILES, parse_network
from splitpipe.plan import Plan, chain_topology
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
from splitpipe.schedules.mpsl_replan import add_costs, replan
from splitpipe.schedules.record import PlannerHook, Segment, Technique
from splitpipe.schedules.steps import owner_steps
from splitpipe.schedules.validate import validate

if TYPE_CHECKING:
    import numpy as np

    from splitpipe.config import RunConfig

__all__ = ["build_mpsl", "check_mpsl", "TECHNIQUE"]

#: Compute nodes when neither their count nor the cuts are given.
DEFAULT_COMPUTE_NODES = 2


def check_mpsl(plan: Plan) -> None:
    """P >= 3 parts and one compute node per middle part."""
    if plan.parts < 3:
        raise ValueError(
            f"mpsl needs at least 3 parts (owner, compute nodes, owner): give at least 2 cuts, got cuts {plan.cuts}"
        )
    if len(plan.chain) != plan.parts - 2:
        raise ValueError(
            f"mpsl with {len(plan.chain)} compute nodes needs {len(plan.chain) + 1} cuts "
            f"({len(plan.chain) + 2} parts), got {len(plan.cuts)} cuts {plan.cuts}"
        )


def build_mpsl(plan: Plan, segment: Segment) -> Schedule:
    check_mpsl(plan)
    last = plan.parts - 1
    lists: dict[tuple[str, int], list[Action]] = {}
    weights = plan.fedavg_weights()
    replicas: list[Replica] = []
    evaluate: dict[int, list[tuple[Replica, float]]] = {p: [] for p in range(plan.parts)}
    owner_members: list[Member] = []
    compute_members: list[Member] = []
    for i, owner in enumerate(plan.owners):
        hops = [owner, *plan.chain, owner]  # hops[p] runs part p
        for step, sizes in owner_steps(plan, i, None, segment):
            _owner_batch(lists.setdefault((owner, i), []), i, last, step, sizes)
            for p in range(1, last):
                _compute_batch(lists.setdefault((hops[p], i), []), p, i, step, sizes)
        for p, node in enumerate(hops):
            replica = Replica(node, p, i)
            replicas.append(replica)
            evaluate[p].append((replica, weights[i]))
            group = owner_members if p in (0, last) else compute_members
            group.append(Member(node, i, i, p, i, weights[i]))
    if segment.aggregates(plan):  # (7)
        for node in plan.chain:
            fedavg(lists, [m for m in compute_members if m.node == node], node, segment.epoch)
        fedavg(lists, owner_members, plan.server, segment.epoch)
    return validate(Schedule(
        programs=add_messages(programs_from_lists(lists), plan.topology.links),
        replicas=tuple(replicas),
        evaluate={p: tuple(v) for p, v in evaluate.items()},
        owners=dict(enumerate(plan.owners)),
    ))


def _owner_batch(own: list[Action], i: int, last: int, step: int, sizes: list[int]) -> None:
    for mb, n in enumerate(sizes):  # (1)
        own.append(Action(FORWARD, part=0, owner=i, replica=i, step=step, mb=mb, samples=n,
                          reads=(Tag("data", i, 0, step, mb),),
                          writes=(Tag("act", i, 0, step, mb), Tag("label", i, 0, step, mb))))
    for mb, n in enumerate(sizes):  # (4)
        own.append(Action(FORWARD, part=last, owner=i, replica=i, step=step, mb=mb, samples=n,
                          reads=(Tag("act", i, last - 1, step, mb), Tag("label", i, 0, step, mb)),
                          writes=(Tag("loss", i, last, step, mb),)))
        own.append(Action(BACKWARD, part=last, owner=i, replica=i, step=step, mb=mb, samples=n,
                          writes=(Tag("grad", i, last, step, mb),)))
    for mb, n in enumerate(sizes):  # (5)
        own.append(Action(BACKWARD, part=0, owner=i, replica=i, step=step, mb=mb, samples=n,
                          reads=(Tag("grad", i, 1, step, mb),)))
    own.append(Action(STEP, part=0, owner=i, replica=i, step=step))  # (6)
    own.append(Action(STEP, part=last, owner=i, replica=i, step=step))


def _compute_batch(own: list[Action], p: int, i: int, step: int, sizes: list[int]) -> None:
    for mb, n in enumerate(sizes):  # (2)
        own.append(Action(FORWARD, part=p, owner=i, replica=i, step=step, mb=mb, samples=n,
                          reads=(Tag("act", i, p - 1, step, mb),), writes=(Tag("act", i, p, step, mb),)))
    for mb, n in enumerate(sizes):  # (5)
        own.append(Action(BACKWARD, part=p, owner=i, replica=i, step=step, mb=mb, samples=n,
                          reads=(Tag("grad", i, p + 1, step, mb),), writes=(Tag("grad", i, p, step, mb),)))
    own.append(Action(STEP, part=p, owner=i, replica=i, step=step))  # (6)


def make_plan(config: RunConfig, labels: np.ndarray, num_units: int) -> tuple[list[np.ndarray], Plan]:
    """Owners device0.., compute nodes compute0.. (links between them: the dc profile), an aggregator."""
    given = config.cut_points()
    compute = config.compute_nodes
    speeds = config.compute_speeds
    if compute is None:
        compute = (max(1, len(given) - 1) if given is not None
                   else len(speeds) if speeds is not None and len(speeds) > 1 else DEFAULT_COMPUTE_NODES)
    cuts = even_cuts(num_units, compute + 2) if given is None else check_cuts(num_units, given)
    owners = config.devices if config.owners is None else config.owners
    topology = chain_topology(
        owners, [parse_network(n) for n in config.networks()], config.device_speeds(),
        compute, config.server_speed if speeds is None else speeds, PROFILES["dc"],
        aggregator_speed=config.server_speed,
    )
    shards = partition(labels, owners, config.partition, config.alpha, config.seed)
    plan = Plan(
        technique="mpsl", topology=topology, num_units=num_units, cuts=cuts,
        batch_size=config.batch_size, micro_batches=config.micro_batches,
        shard_sizes=tuple(len(s) for s in shards), owners=tuple(f"device{i}" for i in range(owners)),
        server="aggregator", aggregation_interval=config.aggregation_interval, labels="owner",
        chain=tuple(f"compute{j}" for j in range(compute)),
    )
    check_mpsl(plan)
    return shards, plan


TECHNIQUE = Technique(
    name="mpsl",
    summary="multihop parallel split learning: owners keep the first and last parts, a chain of compute "
            "nodes the middle ones",
    build=build_mpsl,
    make_plan=make_plan,
    check=check_mpsl,
    roles=("aggregator", "compute", "device"),
    accelerated_roles=frozenset({"compute", "aggregator"}),
    pipelined=True,
    planner=PlannerHook("cuts-ilp", memory_roles=("compute",), estimators=("events", "closed-form")),
    replan=replan,
    droppable_roles=frozenset({"compute"}),
    add_costs=add_costs,
)
