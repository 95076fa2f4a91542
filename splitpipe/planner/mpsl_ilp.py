"""MP-SL's cut selection: an integer linear programme over per-unit costs, solved by HiGHS.

The owners keep units [0, first_cut) and [last_cut, n); the units between go to a chain of
C compute nodes, one contiguous non-empty part each, in chain order. Node i holds one
replica per owner (K of them), so its memory is K x the sum of its units' replica bytes.
The objective is the paper's: the slowest forward stage plus the slowest backward stage,

    minimise  L_fwd + L_back,   L_fwd >= F_i,  L_back >= B_i  for every node i,

optionally with the chain links as stages too (the activation at a cut on the link i ->
i+1 counts towards L_fwd, its gradient on i+1 -> i towards L_back).

Encoding (contiguity without quadratic terms), for the m middle units t = 0..m-1::

    z[i][t] = 1  <=>  unit t sits on node 0..i          (z[C-1][t] = 1: fixed, not a variable)
    z[i][t] >= z[i][t+1]      (1) a prefix: the nodes up to i hold units 0..c_i - 1
    z[i][t] <= z[i+1][t]      (2) prefixes nest, so node i holds units c_{i-1} .. c_i - 1
    x[i][t] = z[i][t] - z[i-1][t]   unit t on node i (linear in z)
    y[i][t] = z[i][t] - z[i][t+1]   the cut after node i falls before unit t+1

Every x and y is then 0 or 1 with z binary, so stage times, memory and link times are
linear. HiGHS (through scipy.optimize.milp) solves it with a zero gap; the cuts are then
scored again exactly by `mpsl_objective`, which the brute-force tests use too.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from splitpipe.planner.milp import solve_milp
from splitpipe.planner.sizes import format_bytes

__all__ = ["MpslSolution", "mpsl_objective", "solve_mpsl_cuts", "check_memory_limits"]

Matrix = Sequence[Sequence[float]]


@dataclass(frozen=True)
class MpslSolution:
    """Cuts (the owners' two included), the objective and what each compute node holds."""

    cuts: tuple[int, ...]
    objective_s: float
    forward_s: tuple[float, ...]
    backward_s: tuple[float, ...]
    memory_bytes: tuple[float, ...]
    solve_s: float


def _stage(values: Sequence[float], a: int, b: int) -> float:
    return float(sum(values[a:b]))


def mpsl_objective(
    cuts: Sequence[int],
    forward: Matrix,
    backward: Matrix,
    link_forward: Matrix | None = None,
    link_backward: Matrix | None = None,
) -> tuple[float, list[float], list[float]]:
    """(L_fwd + L_back, per-node forward, per-node backward) of `cuts` (all P-1 of them).

    forward[i][j] is unit j's forward seconds on compute node i; link_forward[i][c] the
    seconds on link i -> i+1 when the cut between nodes i and i+1 is at unit c.
    """
    inner = list(zip(cuts, cuts[1:]))
    fwd = [_stage(forward[i], a, b) for i, (a, b) in enumerate(inner)]
    bwd = [_stage(backward[i], a, b) for i, (a, b) in enumerate(inner)]
    links_f = [link_forward[i][c] for i, c in enumerate(cuts[1:-1])] if link_forward is not None else []
    links_b = [link_backward[i][c] for i, c in enumerate(cuts[1:-1])] if link_backward is not None else []
    return max(fwd + links_f) + max(bwd + links_b), fwd, bwd


def check_memory_limits(
    memory: Sequence[float], limits: Sequence[float], owners: int, first_cut: int, last_cut: int,
    names: Sequence[str],
) -> None:
    """Raise a one-line ValueError for limits that no contiguous assignment can meet."""
    nodes, middle = len(limits), range(first_cut, last_cut)
    for i, limit in enumerate(limits):  # node i holds one of units first+i .. last-nodes+i
        window = range(first_cut + i, last_cut - nodes + i + 1)
        smallest = min(window, key=lambda j: memory[j])
        need = owners * memory[smallest]
        if need > limit:
            raise ValueError(
                f"memory limits infeasible: {names[i]} limit {format_bytes(limit)} < smallest possible part "
                f"({format_bytes(need)} for unit {smallest} x {owners} owners)"
            )
    total = owners * sum(memory[j] for j in middle)
    if total > sum(limits):
        raise ValueError(
            f"memory limits infeasible: the limits add up to {format_bytes(sum(limits))} < "
            f"{format_bytes(total)} for units {first_cut}..{last_cut - 1} x {owners} owners"
        )


def solve_mpsl_cuts(
    forward: Matrix,
    backward: Matrix,
    memory: Sequence[float],
    limits: Sequence[float] | None,
    *,
    owners: int,
    first_cut: int,
    last_cut: int,
    link_forward: Matrix | None = None,
    link_backward: Matrix | None = None,
    names: Sequence[str] | None = None,
    time_limit_s: float = 60.0,
) -> MpslSolution:
    """The cuts between `first_cut` and `last_cut` for len(forward) compute nodes.

    memory[j] is one replica of unit j in bytes; limits[i] node i's memory (None or inf:
    unlimited). Infeasible limits raise a one-line ValueError naming the node.
    """
    nodes, m = len(forward), last_cut - first_cut
    names = list(names) if names is not None else [f"compute{i}" for i in range(nodes)]
    limits = [math.inf] * nodes if limits is None else [math.inf if v is None else float(v) for v in limits]
    if nodes < 1 or len(backward) != nodes or len(limits) != nodes:
        raise ValueError(f"need forward, backward and limits for each of the compute nodes, got "
                         f"{len(forward)}, {len(backward)} and {len(limits)}")
    if m < nodes:
        raise ValueError(f"cannot give {nodes} compute nodes a unit each: only {max(m, 0)} units "
                         f"between the owners' cuts {first_cut} and {last_cut}")
    check_memory_limits(memory, limits, owners, first_cut, last_cut, names)
    started = time.perf_counter()
    cuts: tuple[int, ...]
    if nodes == 1:
        cuts = (first_cut, last_cut)
    else:
        cuts = _solve(forward, backward, memory, limits, owners, first_cut, last_cut,
                      link_forward, link_backward, names, time_limit_s)
    objective, fwd, bwd = mpsl_objective(cuts, forward, backward, link_forward, link_backward)
    held = tuple(owners * float(sum(memory[a:b])) for a, b in zip(cuts, cuts[1:]))
    return MpslSolution(cuts, objective, tuple(fwd), tuple(bwd), held, time.perf_counter() - started)


def _solve(
    forward: Matrix, backward: Matrix, memory: Sequence[float], limits: Sequence[float], owners: int,
    first_cut: int, last_cut: int, link_forward: Matrix | None, link_backward: Matrix | None,
    names: Sequence[str], time_limit_s: float,
) -> tuple[int, ...]:
    nodes, m = len(forward), last_cut - first_cut
    units = range(first_cut, last_cut)
    scale = max(1e-30, max(sum(forward[i][j] + backward[i][j] for j in units) for i in range(nodes)))
    nz = (nodes - 1) * m
    n_var = nz + 2  # z, then L_fwd and L_back
    lf, lb = nz, nz + 1

    def z(i: int, t: int) -> int:
        return i * m + t

    rows: list[tuple[dict[int, float], float, float]] = []

    def x_terms(i: int, coef: Sequence[float]) -> tuple[dict[int, float], float]:
        """sum_t x[i][t] * coef[t] as (terms over z, constant)."""
        terms: dict[int, float] = {}
        const = 0.0
        for t in range(m):
            if i < nodes - 1:
                terms[z(i, t)] = terms.get(z(i, t), 0.0) + coef[t]
            else:
                const += coef[t]
            if i > 0:
                terms[z(i - 1, t)] = terms.get(z(i - 1, t), 0.0) - coef[t]
        return terms, const

    for i in range(nodes - 1):
        for t in range(m - 1):
            rows.append(({z(i, t): 1.0, z(i, t + 1): -1.0}, 0.0, math.inf))  # (1)
        if i < nodes - 2:
            for t in range(m):
                rows.append(({z(i + 1, t): 1.0, z(i, t): -1.0}, 0.0, math.inf))  # (2)
    for i in range(nodes):
        terms, const = x_terms(i, [1.0] * m)
        rows.append((terms, 1.0 - const, math.inf))  # non-empty
        if math.isfinite(limits[i]):
            terms, const = x_terms(i, [owners * memory[j] / limits[i] for j in units])
            rows.append((terms, -math.inf, 1.0 - const))
        for bound, cost in ((lf, forward[i]), (lb, backward[i])):
            terms, const = x_terms(i, [cost[j] / scale for j in units])
            terms[bound] = -1.0
            rows.append((terms, -math.inf, -const))  # stage <= L
    for links, bound in ((link_forward, lf), (link_backward, lb)):
        if links is None:
            continue
        for i in range(nodes - 1):
            terms = {bound: -1.0}  # cut after node i before unit t+1: y[i][t] = z[i][t] - z[i][t+1]
            for t in range(m - 1):
                link_cost = links[i][first_cut + t + 1] / scale
                terms[z(i, t)] = terms.get(z(i, t), 0.0) + link_cost
                terms[z(i, t + 1)] = terms.get(z(i, t + 1), 0.0) - link_cost
            rows.append((terms, -math.inf, 0.0))
    objective = np.zeros(n_var)
    objective[lf] = objective[lb] = 1.0
    result = solve_milp(objective, rows, n_var, nz, time_limit_s)
    if result.x is None:
        limits_text = ", ".join(f"{n} {format_bytes(v)}" for n, v in zip(names, limits))
        raise ValueError(f"memory limits infeasible: no split of units {first_cut}..{last_cut - 1} over "
                         f"{nodes} compute nodes fits {limits_text} ({result.message})")
    values = np.round(result.x[:nz]).reshape(nodes - 1, m)
    inner = [first_cut + int(values[i].sum()) for i in range(nodes - 1)]
    return (first_cut, *inner, last_cut)
