"""One entry point per technique: profiles and a prepared plan in, the chosen plan out.

pipelearn, sfl, sl: split (and micro-batches) by search over predictions; mpsl: the ILP's
cuts under memory limits; ftpipehd: the DP's cuts. Each result carries the full prediction
of the chosen plan, the predicted time of the plan as configured (the baseline), a table
for the terminal and the RunConfig keys that reproduce it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

from splitpipe.engine.predict import Prediction, predict_epoch
from splitpipe.plan import Plan
from splitpipe.planner.costs import link_times, replica_bytes, unit_times
from splitpipe.planner.ftpipehd_dp import partition_min_max
from splitpipe.planner.mpsl_ilp import solve_mpsl_cuts
from splitpipe.planner.mpsl_nodes import heterogeneous, plan_assignment
from splitpipe.planner.pipelearn import choose_split
from splitpipe.planner.published import closed_form_notes, paper_result
from splitpipe.planner.sizes import format_bytes
from splitpipe.profile import Profile
from splitpipe.schedules import PlannerHook, technique, techniques

__all__ = ["PlanResult", "plan_for", "plannable", "memory_nodes", "mpsl_costs", "ftpipehd_costs"]


def plannable() -> list[str]:
    """The techniques that offer the planner something to choose."""
    return [t.name for t in techniques() if t.planner is not None]


def memory_nodes(plan: Plan) -> list[str]:
    """The nodes `--memory-limit` applies to: those of the roles the technique's planner names."""
    hook = _hook(plan)
    roles = set(hook.memory_roles)
    if not roles:
        users = [t.name for t in techniques() if t.planner is not None and t.planner.memory_roles]
        raise ValueError(f"memory-limit applies to {' and '.join(users)}, not {plan.technique}")
    return [n.name for n in plan.topology.nodes if n.role in roles and n.name in (*plan.owners, *plan.chain)]


def _hook(plan: Plan) -> PlannerHook:
    hook = technique(plan.technique).planner
    if hook is None:
        raise ValueError(f"nothing to plan for {plan.technique}: plan chooses for {', '.join(plannable())}")
    return hook


@dataclass
class PlanResult:
    """The chosen plan of one technique and what to show and write about it."""

    technique: str
    plan: Plan
    prediction: Prediction
    baseline_s: float
    settings: dict[str, object]
    rows: list[dict[str, object]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def plan_for(
    plan: Plan,
    profiles: Mapping[str, Profile],
    *,
    memory_limits: Sequence[float] | None = None,
    micro_batches: Sequence[int] | None = None,
    per_device: bool = True,
    cuts: Sequence[int] | None = None,
    method: str | None = None,
    estimator: str | None = None,
    prices: Sequence[float] | None = None,
    deadline_s: float | None = None,
) -> PlanResult:
    """Choose the fastest configuration of `plan.technique` for `plan`'s topology and data.

    `cuts`: the cuts asked for; the cuts ILP keeps the owners' first and last of them.
    `method`, `estimator`: one of those the technique's planner hook offers (None: its first).
    `prices` (per compute node and busy second) and `deadline_s`: the cheapest cuts within the
    deadline instead of the fastest (cuts ILP only).
    """
    hook = _hook(plan)
    if memory_limits is not None and not hook.memory_roles:
        memory_nodes(plan)  # raises, naming the techniques that take a memory limit
    method = _offered("method", method, hook.methods, plan)
    estimator = _offered("estimator", estimator, hook.estimators, plan)
    if (prices is not None or deadline_s is not None) and hook.strategy != "cuts-ilp":
        users = [t.name for t in techniques() if t.planner is not None and t.planner.strategy == "cuts-ilp"]
        raise ValueError(f"compute prices and a deadline apply to {' and '.join(users)}, not {plan.technique}")
    if prices is not None and len(prices) != len(plan.chain):
        raise ValueError(f"compute-prices has {len(prices)} values for {len(plan.chain)} compute nodes: give one each")
    baseline = predict_epoch(plan, profiles).time_s
    if hook.strategy == "cuts-ilp":
        owner_cuts = (cuts[0], cuts[-1]) if cuts else (1, plan.num_units - 1)
        if heterogeneous(plan, memory_limits, prices):
            result = plan_assignment(plan, profiles, mpsl_costs(plan, profiles), memory_limits, owner_cuts,
                                     baseline, prices=prices, deadline_s=deadline_s)
        else:
            result = _mpsl(plan, profiles, memory_limits, owner_cuts, baseline)
    elif hook.strategy == "stages-dp":
        result = _ftpipehd(plan, profiles, memory_limits, baseline)
    else:
        result = _split(plan, profiles, hook, micro_batches, per_device, baseline)
        if method == "paper":
            result = paper_result(plan, profiles, result)
    if estimator == "closed-form":
        result.notes += closed_form_notes(result.plan, profiles, result.prediction.time_s)
    return result


def _offered(what: str, value: str | None, offered: tuple[str, ...], plan: Plan) -> str:
    if value is None:
        return offered[0]
    if value not in offered:
        users = [t.name for t in techniques() if t.planner is not None
                 and value in (t.planner.methods if what == "method" else t.planner.estimators)]
        where = f"; {value} is offered for {', '.join(users)}" if users else ""
        raise ValueError(f"{what} '{value}' is not offered for {plan.technique}: choose {' or '.join(offered)}{where}")
    return value


def _split(
    plan: Plan, profiles: Mapping[str, Profile], hook: PlannerHook, micro_batches: Sequence[int] | None,
    per_device: bool, baseline: float,
) -> PlanResult:
    pipelined = hook.micro_batches
    choice = choose_split(plan, profiles, micro_batches=micro_batches if pipelined else (1,),
                          per_device=per_device and hook.per_device)
    settings: dict[str, object] = {"split": choice.splits[0]}
    if pipelined:
        settings["micro_batches"] = choice.micro_batches[0]
    if choice.per_device:
        settings["device_splits"] = ",".join(map(str, choice.splits))
        if pipelined:
            settings["device_micro_batches"] = ",".join(map(str, choice.micro_batches))
    topology = plan.topology
    rows = [
        {"device": d, "speed": topology.node(d).speed,
         "up_Mbps": topology.link(d, plan.server).bandwidth_Bps * 8 / 1e6,
         "down_Mbps": topology.link(plan.server, d).bandwidth_Bps * 8 / 1e6,
         "split": choice.splits[i], **({"micro_batches": choice.micro_batches[i]} if pipelined else {}),
         "idle_s": choice.prediction.idle_s[d]}
        for i, d in enumerate(plan.owners)
    ]
    common = f"split {choice.common[0]}" + (f", {choice.common[1]} micro-batches" if pipelined else "")
    notes = [f"best common choice: {common} ({choice.common_estimate_s:.4g} s predicted)",
             f"searched {choice.evaluations} configurations in {choice.search_s:.2f} s"]
    if choice.per_device:
        notes.append(f"per-device choice: {choice.estimate_s:.4g} s predicted "
                     f"({1 - choice.estimate_s / choice.common_estimate_s:.1%} faster than common)")
    return PlanResult(plan.technique, choice.plan, choice.prediction, baseline, settings, rows, notes)


def _mpsl(
    plan: Plan, profiles: Mapping[str, Profile], limits: Sequence[float] | None,
    owner_cuts: tuple[int, int], baseline: float,
) -> PlanResult:
    first, last = owner_cuts
    forward, backward, memory = mpsl_costs(plan, profiles)
    solution = solve_mpsl_cuts(forward, backward, memory,
                               None if limits is None else list(limits), owners=len(plan.owners),
                               first_cut=first, last_cut=last, names=plan.chain)
    chosen = replace(plan, cuts=solution.cuts)
    prediction = predict_epoch(chosen, profiles)
    bounds = list(zip(solution.cuts, solution.cuts[1:]))
    rows = [
        {"node": node, "units": f"{a}..{b - 1}", "forward_s": solution.forward_s[i],
         "backward_s": solution.backward_s[i], "memory": format_bytes(solution.memory_bytes[i]),
         "limit": format_bytes(limits[i]) if limits is not None else "-", "idle_s": prediction.idle_s[node]}
        for i, (node, (a, b)) in enumerate(zip(plan.chain, bounds))
    ]
    notes = [f"ILP objective (slowest forward + slowest backward stage, per mini-batch): "
             f"{solution.objective_s:.4g} s; solved in {solution.solve_s * 1e3:.1f} ms (HiGHS)",
             f"owners keep units 0..{first - 1} and {last}..{plan.num_units - 1}"]
    settings = {"cuts": ",".join(map(str, solution.cuts)), "compute_nodes": len(plan.chain)}
    return PlanResult(plan.technique, chosen, prediction, baseline, settings, rows, notes)


def mpsl_costs(plan: Plan, profiles: Mapping[str, Profile]) -> tuple[list[list[float]], list[list[float]], list[float]]:
    """Per compute node and unit: forward and backward(+step) seconds per mini-batch; replica bytes per unit."""
    forward, backward = [], []
    for node in plan.chain:
        f, b, u = unit_times(profiles[node], plan.topology.node(node).speed, plan.batch_size, plan.micro_batches)
        forward.append(f)
        backward.append([x + y for x, y in zip(b, u)])  # the step closes the backward stage
    return forward, backward, replica_bytes(profiles[plan.chain[0]], plan.batch_size)


def ftpipehd_costs(plan: Plan, profiles: Mapping[str, Profile]) -> tuple[list[list[float]], list[list[float]]]:
    """Per stage and unit: forward + backward + step seconds per mini-batch; per link and cut:
    the busier direction's seconds per mini-batch."""
    nodes = [plan.owners[0], *plan.chain]
    compute = []
    for node in nodes:
        f, b, u = unit_times(profiles[node], plan.topology.node(node).speed, plan.batch_size, plan.micro_batches)
        compute.append([x + y + z for x, y, z in zip(f, b, u)])
    link = []
    for src, dst in zip(nodes, nodes[1:]):
        up, down = link_times(profiles[src], plan.batch_size, plan.topology.link(src, dst),
                              plan.topology.link(dst, src))
        link.append([max(x, y) for x, y in zip(up, down)])
    return compute, link


def _ftpipehd(
    plan: Plan, profiles: Mapping[str, Profile], limits: Sequence[float] | None, baseline: float,
) -> PlanResult:
    nodes = [plan.owners[0], *plan.chain]
    compute, link = ftpipehd_costs(plan, profiles)
    memory = replica_bytes(profiles[nodes[0]], plan.batch_size) if limits is not None else None
    solution = partition_min_max(compute, link, memory, None if limits is None else list(limits))
    chosen = replace(plan, cuts=solution.cuts)
    prediction = predict_epoch(chosen, profiles)
    bounds = [0, *solution.cuts, plan.num_units]
    rows = [
        {"stage": node, "speed": plan.topology.node(node).speed, "units": f"{a}..{b - 1}",
         "compute_s": solution.stage_s[s],
         "link_s": solution.link_s[s] if s < len(solution.link_s) else math.nan,
         "idle_s": prediction.idle_s[node]}
        for s, (node, a, b) in enumerate(zip(nodes, bounds, bounds[1:]))
    ]
    notes = [f"DP bottleneck (slowest stage or link, per mini-batch): {solution.bottleneck_s:.4g} s"]
    settings = {"cuts": ",".join(map(str, solution.cuts)), "stages": len(nodes)}
    return PlanResult(plan.technique, chosen, prediction, baseline, settings, rows, notes)
