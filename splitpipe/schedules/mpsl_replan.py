"""MP-SL's re-plan: go on without dead owners and dead compute nodes, the cuts re-solved over the survivors.

    owners -> compute0 -> compute1 -> compute2 -> owners        compute1 dies
    owners -> compute0 -----------> compute2 -> owners           (1) the chain closes over the gap
    cuts[0], cuts[-1] kept (the owners' parts); the middle ones from the ILP over the survivors  (2)

(1) Survivors keep their own links; the new hop compute0 -> compute2 gets the chain's profile,
an owner that loses its first or last compute node reaches the new one over its own network.
(2) The ILP (planner/mpsl_ilp.py) weighs each unit's forward and backward seconds on each
survivor (the run's profile, see `add_costs`; without it every unit counts the same). The dead
node's layers come back from the last aggregation's copy, which the aggregator holds
(engine/carry.py), and the interrupted segment is redone.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, cast

from splitpipe.plan import Plan, Topology

if TYPE_CHECKING:
    from splitpipe.network import LinkSpec
    from splitpipe.profile import Profile

__all__ = ["replan", "add_costs", "ilp_cuts", "UNIT_FORWARD_S", "UNIT_BACKWARD_S"]

#: Plan.extra keys: forward and backward (+ step) seconds per mini-batch of each unit on a node of speed 1.
UNIT_FORWARD_S = "unit_forward_s"
UNIT_BACKWARD_S = "unit_backward_s"


def replan(plan: Plan, lost: Sequence[str]) -> tuple[Plan, Mapping[int, int]]:
    """`plan` without the owners and compute nodes in `lost`; new middle cuts if a compute node died."""
    if plan.server in lost:
        raise RuntimeError(f"{plan.server} (the aggregator) failed: mpsl cannot go on without it; "
                           "restart with --resume from the last checkpoint")
    survivors = tuple(n for n in plan.chain if n not in lost)
    if not survivors:
        raise RuntimeError(f"every compute node failed ({', '.join(sorted(lost))}): mpsl needs at least one")
    new = plan
    if survivors != plan.chain:
        new = replace(plan, topology=survivor_topology(plan, survivors), chain=survivors)
        new = replace(new, cuts=ilp_cuts(new))
    gone = [n for n in lost if n in plan.owners]
    return new.without_owners(gone) if gone else (new, {i: i for i in range(len(plan.owners))})


def survivor_topology(plan: Plan, survivors: Sequence[str]) -> Topology:
    """The nodes that are left and their links, the chain closed over the dead (1)."""
    old, chain = plan.topology, plan.chain
    keep = {n.name for n in old.nodes} - (set(chain) - set(survivors))
    links: dict[tuple[str, str], LinkSpec] = {k: v for k, v in old.links.items() if keep >= set(k)}
    if len(chain) > 1:
        up, down = old.link(chain[0], chain[1]), old.link(chain[1], chain[0])
        for a, b in zip(survivors, survivors[1:]):
            links.setdefault((a, b), up)
            links.setdefault((b, a), down)
    for owner in plan.owners:
        for new_end, old_end in ((survivors[0], chain[0]), (survivors[-1], chain[-1])):
            links.setdefault((owner, new_end), old.link(owner, old_end))
            links.setdefault((new_end, owner), old.link(old_end, owner))
    return Topology(tuple(n for n in old.nodes if n.name in keep), links)


def ilp_cuts(plan: Plan) -> tuple[int, ...]:
    """The owners' two cuts kept, the middle ones from MP-SL's ILP over `plan.chain` at their speeds (2)."""
    from splitpipe.planner.mpsl_ilp import solve_mpsl_cuts  # planner sits above schedules

    ones = (1.0,) * plan.num_units
    forward = cast("Sequence[float]", plan.extra.get(UNIT_FORWARD_S) or ones)
    backward = cast("Sequence[float]", plan.extra.get(UNIT_BACKWARD_S) or ones)
    speeds = [plan.topology.node(n).speed for n in plan.chain]
    solution = solve_mpsl_cuts([[f / s for f in forward] for s in speeds], [[b / s for b in backward] for s in speeds],
                               [0.0] * plan.num_units, None, owners=len(plan.owners), first_cut=plan.cuts[0],
                               last_cut=plan.cuts[-1], names=plan.chain)
    return solution.cuts


def add_costs(plan: Plan, profiles: Mapping[str, Profile]) -> Plan:
    """`plan` with the first compute node's profile (at speed 1) as the ILP's unit costs."""
    from splitpipe.planner.costs import unit_times

    f, b, u = unit_times(profiles[plan.chain[0]], 1.0, plan.batch_size, plan.micro_batches)
    return replace(plan, extra={**plan.extra, UNIT_FORWARD_S: tuple(f),
                                UNIT_BACKWARD_S: tuple(x + y for x, y in zip(b, u))})
