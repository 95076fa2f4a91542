"""FTPipeHD's partition: a min-max dynamic programme over contiguous parts of a chain.

Stage s (the central node is stage 0) runs units [c_s, c_{s+1}) and the link between
stages s and s+1 carries the activation and the gradient at cut c_{s+1}. A pipeline runs
no faster than its busiest resource, so the best partition minimises the largest of the
stage and link times::

    best[s][j] = min over i < j of max(best[s-1][i], link[s-1][i], compute[s][i:j])

over j units given to stages 0..s, with best[0][j] = compute[0][0:j]. compute[s][j] is unit
j's time on stage s (its profile time over its capacity, so heterogeneous devices are
exactly what the table says); link[s][c] the time on the link between stages s and s+1
when it carries the tensors at cut c; overhead[s] a stage's time whatever its units (a
fixed cost per action). O(S n^2) with prefix sums; ties go to the earliest cut.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import accumulate

from splitpipe.planner.sizes import format_bytes

__all__ = ["DpSolution", "partition_min_max", "bottleneck_of"]

Matrix = Sequence[Sequence[float]]


@dataclass(frozen=True)
class DpSolution:
    """S-1 cuts, the bottleneck time, and every stage's and link's time under them."""

    cuts: tuple[int, ...]
    bottleneck_s: float
    stage_s: tuple[float, ...]
    link_s: tuple[float, ...]


def bottleneck_of(
    cuts: Sequence[int], compute: Matrix, link: Matrix | None = None,
    memory: Sequence[float] | None = None, limits: Sequence[float] | None = None,
    overhead: Sequence[float] | None = None,
) -> tuple[float, list[float], list[float]]:
    """(bottleneck, stage times, link times) of `cuts`; inf where a stage's memory is over its limit."""
    bounds = [0, *cuts, len(compute[0])]
    fixed = overhead or [0.0] * len(compute)
    stages = [float(sum(compute[s][a:b])) + fixed[s] for s, (a, b) in enumerate(zip(bounds, bounds[1:]))]
    links = [float(link[s][c]) for s, c in enumerate(cuts)] if link is not None else []
    if memory is not None and limits is not None:
        for s, (a, b) in enumerate(zip(bounds, bounds[1:])):
            if sum(memory[a:b]) > limits[s]:
                stages[s] = math.inf
    return max(stages + links), stages, links


def partition_min_max(
    compute: Matrix,
    link: Matrix | None = None,
    memory: Sequence[float] | None = None,
    limits: Sequence[float] | None = None,
    overhead: Sequence[float] | None = None,
) -> DpSolution:
    """The contiguous partition of len(compute[0]) units over len(compute) stages with the
    smallest bottleneck; every stage gets at least one unit.

    `memory[j]` (bytes of unit j on a stage) and `limits[s]` optionally cap each stage.
    """
    stages, n = len(compute), len(compute[0]) if compute else 0
    if stages < 1 or n < stages:
        raise ValueError(f"cannot give {stages} stages a unit each with {n} units")
    if link is not None and len(link) < stages - 1:
        raise ValueError(f"need link times for {stages - 1} links, got {len(link)}")
    prefix = [[0.0, *accumulate(row)] for row in compute]
    fixed = overhead or [0.0] * stages
    mem = [0.0, *accumulate(memory)] if memory is not None else None

    def cost(s: int, i: int, j: int) -> float:
        if mem is not None and limits is not None and mem[j] - mem[i] > limits[s]:
            return math.inf
        return prefix[s][j] - prefix[s][i] + fixed[s]

    best = [[math.inf] * (n + 1) for _ in range(stages)]
    choice = [[0] * (n + 1) for _ in range(stages)]
    for j in range(1, n - stages + 2):
        best[0][j] = cost(0, 0, j)
    for s in range(1, stages):
        for j in range(s + 1, n - stages + s + 2):
            for i in range(s, j):
                value = max(best[s - 1][i], link[s - 1][i] if link is not None else 0.0, cost(s, i, j))
                if value < best[s][j]:
                    best[s][j], choice[s][j] = value, i
    if math.isinf(best[-1][n]):
        fits = ", ".join(format_bytes(v) for v in limits or [])
        raise ValueError(f"memory limits infeasible: no partition of {n} units over {stages} stages fits "
                         f"the limits {fits}")
    cuts, j = [], n
    for s in range(stages - 1, 0, -1):
        j = choice[s][j]
        cuts.append(j)
    cuts.reverse()
    value, stage_s, link_s = bottleneck_of(cuts, compute, link, memory, limits, overhead)
    return DpSolution(tuple(cuts), value, tuple(stage_s), tuple(link_s))
