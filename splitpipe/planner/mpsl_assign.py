"""MP-SL's cut ILP with heterogeneous compute nodes: any node may take any block of layers.

The paper's x[i][t] = 1 when middle unit t sits on compute node i. Unlike mpsl_ilp.py the
nodes are not bound to chain order: the blocks are consecutive, but block k may go to any
node, so a fast or large node can take the heavy block wherever it is. Contiguity stays
linear with a start marker per node::

    sum_i x[i][t] = 1                 (1) every unit on exactly one node
    sum_t x[i][t] >= 1                (2) every node holds a unit
    s[i][t] >= x[i][t] - x[i][t-1]    (3) s marks where node i's block starts (x[i][-1] = 0)
    sum_t s[i][t] <= 1                (4) so each node holds one contiguous block
    K sum_t x[i][t] mu[t] <= mem[i]   (5) K replicas fit
    F_i <= L_fwd, B_i <= L_back       (6) the slowest stages

Objective, per epoch of R mini-batches in the closed-form model (planner/mpsl_cost.py):
time  = fixed + sum_i (F_i + B_i) + (R - 1) (L_fwd + L_back)  (R = 2: the paper's own
objective L_fwd + L_back, plus one pass of the empty pipeline). With prices (per busy
second of a node) and a deadline: minimise cost = R sum_i price_i (F_i + B_i) subject to
time <= deadline. `assignment_value` scores an assignment the same way; the tests compare
HiGHS with brute force over every cut and permutation.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from splitpipe.planner.milp import solve_milp
from splitpipe.planner.sizes import format_bytes

__all__ = ["Assignment", "assignment_value", "solve_mpsl_assignment"]

Matrix = Sequence[Sequence[float]]


@dataclass(frozen=True)
class Assignment:
    """Cuts (the owners' two included), which node holds each block, and what it costs."""

    cuts: tuple[int, ...]
    order: tuple[int, ...]
    """order[k]: the compute node holding block k (units cuts[k]..cuts[k+1]-1)."""
    time_s: float
    cost: float
    solve_s: float


def assignment_value(
    cuts: Sequence[int], order: Sequence[int], forward: Matrix, backward: Matrix, *, batches: int,
    fixed_s: float = 0.0, prices: Sequence[float] | None = None,
) -> tuple[float, float]:
    """(epoch time, cost) of giving block k = units cuts[k]..cuts[k+1]-1 to node order[k]."""
    blocks = list(zip(cuts, cuts[1:]))
    fwd = [float(sum(forward[i][a:b])) for i, (a, b) in zip(order, blocks)]
    bwd = [float(sum(backward[i][a:b])) for i, (a, b) in zip(order, blocks)]
    busy = [f + b for f, b in zip(fwd, bwd)]
    epoch = fixed_s + sum(busy) + (batches - 1) * (max(fwd) + max(bwd))
    cost = batches * sum(p * t for p, t in zip([prices[i] for i in order], busy)) if prices is not None else 0.0
    return epoch, cost


def solve_mpsl_assignment(
    forward: Matrix, backward: Matrix, memory: Sequence[float], limits: Sequence[float] | None, *,
    owners: int, first_cut: int, last_cut: int, batches: int = 2, fixed_s: float = 0.0,
    prices: Sequence[float] | None = None, deadline_s: float | None = None, time_limit_s: float = 60.0,
) -> Assignment:
    """The fastest assignment (or, with prices and a deadline, the cheapest that meets it)."""
    nodes, m = len(forward), last_cut - first_cut
    limits = [math.inf] * nodes if limits is None else [float(v) for v in limits]
    if len(backward) != nodes or len(limits) != nodes or (prices is not None and len(prices) != nodes):
        raise ValueError(f"need forward, backward, limits (and prices) for each of the {nodes} compute nodes, got "
                         f"{len(backward)}, {len(limits)} and {'-' if prices is None else len(prices)}")
    if m < nodes:
        raise ValueError(f"cannot give {nodes} compute nodes a unit each: only {max(m, 0)} units "
                         f"between the owners' cuts {first_cut} and {last_cut}")
    if (deadline_s is None) != (prices is None):
        raise ValueError("a deadline needs prices and prices need a deadline: give both or neither")
    started = time.perf_counter()
    units = range(first_cut, last_cut)
    scale = max(1e-30, max(sum(forward[i][j] + backward[i][j] for j in units) for i in range(nodes)))
    n_x = nodes * m
    lf, lb, n_var = 2 * n_x, 2 * n_x + 1, 2 * n_x + 2

    def x(i: int, t: int) -> int:
        return i * m + t

    def s(i: int, t: int) -> int:
        return n_x + i * m + t

    rows: list[tuple[dict[int, float], float, float]] = []
    for t in range(m):
        rows.append(({x(i, t): 1.0 for i in range(nodes)}, 1.0, 1.0))  # (1)
    for i in range(nodes):
        rows.append(({x(i, t): 1.0 for t in range(m)}, 1.0, math.inf))  # (2)
        for t in range(m):
            terms = {s(i, t): 1.0, x(i, t): -1.0}
            if t > 0:
                terms[x(i, t - 1)] = 1.0
            rows.append((terms, 0.0, math.inf))  # (3)
        rows.append(({s(i, t): 1.0 for t in range(m)}, -math.inf, 1.0))  # (4)
        if math.isfinite(limits[i]):
            rows.append(({x(i, t): owners * memory[first_cut + t] / limits[i] for t in range(m)}, -math.inf, 1.0))  # (5)
        for bound, cost in ((lf, forward[i]), (lb, backward[i])):
            terms = {x(i, t): cost[first_cut + t] / scale for t in range(m)}
            terms[bound] = -1.0
            rows.append((terms, -math.inf, 0.0))  # (6)
    busy = np.zeros(n_var)  # sum_i (F_i + B_i) / scale, then (R - 1)(L_fwd + L_back) / scale
    for i in range(nodes):
        for t in range(m):
            busy[x(i, t)] = (forward[i][first_cut + t] + backward[i][first_cut + t]) / scale
    busy[lf] = busy[lb] = batches - 1
    if prices is None:
        objective = busy
    else:
        assert deadline_s is not None
        rows.append(({j: v for j, v in enumerate(busy) if v}, -math.inf, (deadline_s - fixed_s) / scale))
        objective = np.zeros(n_var)
        for i in range(nodes):
            for t in range(m):
                objective[x(i, t)] = prices[i] * busy[x(i, t)]
    result = solve_milp(objective, rows, n_var, 2 * n_x, time_limit_s)
    if result.x is None:
        limits_text = ", ".join(format_bytes(v) for v in limits)
        if deadline_s is not None:
            fastest = solve_mpsl_assignment(forward, backward, memory, limits, owners=owners, first_cut=first_cut,
                                            last_cut=last_cut, batches=batches, fixed_s=fixed_s)
            raise ValueError(f"deadline {deadline_s:.4g} s cannot be met: the fastest assignment within the memory "
                             f"limits ({limits_text}) takes {fastest.time_s:.4g} s")
        raise ValueError(f"no assignment of units {first_cut}..{last_cut - 1} to {nodes} compute nodes fits "
                         f"the memory limits {limits_text} ({result.message})")
    held = np.round(result.x[:n_x]).reshape(nodes, m)
    starts = sorted((int(np.argmax(held[i])), i) for i in range(nodes))
    cuts = (*(first_cut + t for t, _ in starts), last_cut)
    order = tuple(i for _, i in starts)
    epoch_s, spent = assignment_value(cuts, order, forward, backward, batches=batches, fixed_s=fixed_s, prices=prices)
    return Assignment(cuts, order, epoch_s, spent, time.perf_counter() - started)
