"""FTPipeHD's re-plan: the chain without its dead workers, re-partitioned by the min-max DP over the survivors.

    central -> worker1 -> worker2 -> worker3        worker2 dies
    central -> worker1 ----------> worker3          (1) worker1 reaches worker3 over worker3's hop
    cuts = DP(unit costs / each survivor's capacity, link times at each cut)   (2)

(1) Each survivor keeps the network it joined with: the hop into it from the stage before is
its access link, so the new hop worker1 -> worker3 takes the old worker2 -> worker3 link (and
worker3 -> worker2 for the way back). (2) The DP's unit costs are the run's profile (see
`add_costs`: seconds per mini-batch on a node of speed 1 and the bytes at each cut); without
them every unit counts the same. Weights come back from the nearest copy (engine/carry.py).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, cast

from splitpipe.plan import Plan, Topology
from splitpipe.schedules.ir import BACKWARD, FORWARD, STEP

if TYPE_CHECKING:
    from splitpipe.network import LinkSpec
    from splitpipe.profile import Profile

__all__ = ["replan", "add_costs", "dp_cuts", "dp_costs", "stage_s", "UNIT_S", "STAGE_S", "CUT_BYTES", "UNIT_BYTES"]

#: Plan.extra keys: seconds per mini-batch of each unit on a node of speed 1 (forward, backward,
#: step); a stage's fixed seconds per mini-batch whatever its units (the profile's calibrated cost
#: per action); bytes per mini-batch of the activation at each cut 0..n; bytes of each unit's weights.
UNIT_S = "unit_s"
STAGE_S = "stage_s"
CUT_BYTES = "cut_bytes"
UNIT_BYTES = "unit_bytes"


def replan(plan: Plan, lost: Sequence[str]) -> tuple[Plan, Mapping[int, int]]:
    """`plan` without the workers in `lost`, its cuts from the DP over the survivors."""
    central = plan.owners[0]
    if central in lost:
        raise RuntimeError(f"{central} (the central node, with the data) failed: ftpipehd cannot go on without "
                           "it; restart with --resume from the last checkpoint")
    survivors = tuple(n for n in plan.chain if n not in lost)
    if not survivors:
        raise RuntimeError(f"every worker failed ({', '.join(sorted(lost))}): ftpipehd needs at least one")
    nodes = (central, *survivors)
    if len(nodes) > plan.num_units:
        raise RuntimeError(f"{len(nodes)} stages cannot share {plan.num_units} units")
    topology = survivor_topology(plan.topology, plan.chain, survivors, central)
    new = replace(plan, topology=topology, chain=survivors)
    return replace(new, cuts=dp_cuts(new)), {0: 0}


def survivor_topology(old: Topology, chain: Sequence[str], survivors: Sequence[str], central: str) -> Topology:
    """The stages that are left, each hop over its later stage's own access link (1)."""
    keep = {central, *survivors}
    nodes = tuple(n for n in old.nodes if n.name in keep)
    before = dict(zip(chain, (central, *chain)))  # each worker's stage before it, in the old chain
    links: dict[tuple[str, str], LinkSpec] = {k: v for k, v in old.links.items() if keep >= set(k)}
    for a, b in zip((central, *survivors), survivors):
        links.setdefault((a, b), old.link(before[b], b))  # (1)
        links.setdefault((b, a), old.link(b, before[b]))
    links.setdefault((central, survivors[-1]), old.link(central, chain[0]))  # labels
    return Topology(nodes, links)


def dp_cuts(plan: Plan) -> tuple[int, ...]:
    """The min-max DP's cuts for `plan`'s stages at their node speeds (2)."""
    from splitpipe.planner.ftpipehd_dp import partition_min_max  # planner sits above schedules

    compute, hops, overhead = dp_costs(plan)
    return partition_min_max(compute, hops, overhead=overhead).cuts


def stage_s(plan: Plan) -> float:
    return float(plan.extra.get(STAGE_S, 0.0))  # type: ignore[arg-type]


def dp_costs(plan: Plan, speeds: Sequence[float] | None = None, links: Mapping[tuple[str, str], LinkSpec] | None = None,
             ) -> tuple[list[list[float]], list[list[float]], list[float]]:
    """The DP's tables: each unit's seconds per mini-batch on each stage, each hop's seconds at
    each cut, each stage's fixed seconds; `speeds` (one per stage) and `links` (measured)
    replace the topology's."""
    unit_s = cast("Sequence[float]", plan.extra.get(UNIT_S) or (1.0,) * plan.num_units)
    cut_bytes = cast("Sequence[float]", plan.extra.get(CUT_BYTES) or (0.0,) * (plan.num_units + 1))
    nodes = [plan.owners[0], *plan.chain]
    topology = plan.topology
    speeds = speeds or [topology.node(n).speed for n in nodes]
    link = {**topology.links, **(links or {})}
    compute = [[u / speed for u in unit_s] for speed in speeds]
    hops = [[max(link[a, b].transfer_s(int(c)), link[b, a].transfer_s(int(c))) for c in cut_bytes]
            for a, b in zip(nodes, nodes[1:])]
    return compute, hops, [stage_s(plan) / speed for speed in speeds]


def add_costs(plan: Plan, profiles: Mapping[str, Profile]) -> Plan:
    """`plan` with the central node's profile as the DP's unit costs (what `dp_cuts` reads)."""
    from splitpipe.planner.costs import unit_times

    profile = profiles[plan.owners[0]]
    f, b, u = unit_times(profile, 1.0, plan.batch_size, plan.micro_batches)
    (fixed_f, ratio_f), (fixed_b, ratio_b), (fixed_u, ratio_u) = (
        profile.calibration.get(op, (0.0, 0.0)) for op in (FORWARD, BACKWARD, STEP))
    unit_s = tuple(x * (1 + ratio_f) + y * (1 + ratio_b) + z * (1 + ratio_u) for x, y, z in zip(f, b, u))
    fixed = plan.micro_batches * (fixed_f + fixed_b) + fixed_u
    cut_bytes = tuple(float(profile.boundary_bytes(c) * plan.batch_size) for c in range(plan.num_units + 1))
    unit_bytes = tuple(float(profile.param_bytes(range(u, u + 1))) for u in range(plan.num_units))
    extra = {**plan.extra, UNIT_S: unit_s, STAGE_S: fixed, CUT_BYTES: cut_bytes, UNIT_BYTES: unit_bytes}
    return replace(plan, extra=extra)
