"""MP-SL on heterogeneous compute nodes: the assignment ILP's choice as a plan and a table.

When compute nodes differ (speed, memory) or have prices, order matters: `mpsl_assign.py`
gives block k of layers to any node. The plan keeps its chain compute0..C-1 (links between
compute nodes are alike, so only a node's speed tells them apart) and gives position k the
speed of the node chosen for it; `compute_speeds` in the written config is that order.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

from splitpipe.engine.predict import predict_epoch
from splitpipe.plan import Node, Plan, Topology
from splitpipe.planner.mpsl_assign import solve_mpsl_assignment
from splitpipe.planner.mpsl_cost import closed_form_epoch
from splitpipe.planner.sizes import format_bytes
from splitpipe.profile import Profile

if TYPE_CHECKING:
    from splitpipe.planner.choose import PlanResult

__all__ = ["heterogeneous", "plan_assignment"]


def heterogeneous(plan: Plan, limits: Sequence[float] | None, prices: Sequence[float] | None) -> bool:
    """Whether the compute nodes differ, so that which node holds which block matters."""
    speeds = {plan.topology.node(n).speed for n in plan.chain}
    return prices is not None or len(speeds) > 1 or (limits is not None and len(set(limits)) > 1)


def _reordered(topology: Topology, chain: Sequence[str], order: Sequence[int]) -> Topology:
    """`topology` with chain position k running at the speed of chain[order[k]]."""
    speed = {chain[k]: topology.node(chain[i]).speed for k, i in enumerate(order)}
    nodes = tuple(Node(n.name, n.role, speed.get(n.name, n.speed)) for n in topology.nodes)
    return replace(topology, nodes=nodes)


def plan_assignment(
    plan: Plan, profiles: Mapping[str, Profile], costs: tuple[list[list[float]], list[list[float]], list[float]],
    limits: Sequence[float] | None, owner_cuts: tuple[int, int], baseline: float, *,
    prices: Sequence[float] | None = None, deadline_s: float | None = None,
) -> PlanResult:
    """The fastest assignment of layer blocks to compute nodes (or the cheapest within `deadline_s`)."""
    from splitpipe.planner.choose import PlanResult

    forward, backward, memory = costs
    model = closed_form_epoch(plan, profiles)
    solution = solve_mpsl_assignment(
        forward, backward, memory, limits, owners=len(plan.owners), first_cut=owner_cuts[0],
        last_cut=owner_cuts[1], batches=model.batches, fixed_s=model.fixed_s, prices=prices, deadline_s=deadline_s)
    topology = _reordered(plan.topology, plan.chain, solution.order)
    chosen = replace(plan, cuts=solution.cuts, topology=topology)
    prediction = predict_epoch(chosen, profiles)
    rows: list[dict[str, object]] = []
    for k, (i, (a, b)) in enumerate(zip(solution.order, zip(solution.cuts, solution.cuts[1:]))):
        rows.append({"position": plan.chain[k], "node": f"node {i}", "speed": topology.node(plan.chain[k]).speed,
                     "units": f"{a}..{b - 1}", "forward_s": sum(forward[i][a:b]), "backward_s": sum(backward[i][a:b]),
                     "memory": format_bytes(len(plan.owners) * sum(memory[a:b])),
                     "limit": format_bytes(limits[i]) if limits is not None else "-",
                     **({"price": prices[i]} if prices is not None else {}),
                     "idle_s": prediction.idle_s[plan.chain[k]]})
    aim = "fastest" if prices is None else f"cheapest within {deadline_s:.4g} s"
    notes = [f"assignment ILP ({aim}; node i = the i-th of --compute-speeds): closed-form epoch "
             f"{solution.time_s:.4g} s" + (f", cost {solution.cost:.4g}" if prices is not None else "")
             + f"; solved in {solution.solve_s * 1e3:.1f} ms (HiGHS)",
             f"owners keep units 0..{owner_cuts[0] - 1} and {owner_cuts[1]}..{plan.num_units - 1}"]
    settings = {"cuts": ",".join(map(str, solution.cuts)), "compute_nodes": len(plan.chain),
                "compute_speeds": ",".join(str(topology.node(n).speed) for n in plan.chain)}
    return PlanResult(plan.technique, chosen, prediction, baseline, settings, rows, notes)
