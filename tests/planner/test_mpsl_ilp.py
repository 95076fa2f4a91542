"""MP-SL's ILP: the optimum of brute force on small random instances, limits never exceeded,
infeasible limits refused in one line."""

import itertools
import math
import random

import pytest

from splitpipe.planner.mpsl_ilp import mpsl_objective, solve_mpsl_cuts


def instance(rng: random.Random, units: int, nodes: int, links: bool):
    """Random per-node unit times (nodes differ in speed), memory, and owner cuts."""
    speed = [rng.uniform(0.3, 3.0) for _ in range(nodes)]
    base_f = [rng.uniform(0.1, 5.0) for _ in range(units)]
    base_b = [rng.uniform(0.1, 8.0) for _ in range(units)]
    forward = [[t / s for t in base_f] for s in speed]
    backward = [[t / s for t in base_b] for s in speed]
    memory = [rng.uniform(1.0, 100.0) for _ in range(units)]
    first = rng.randint(1, 2)
    last = units - rng.randint(1, 2)
    if last - first < nodes:
        first, last = 1, units - 1
    lf = lb = None
    if links:
        lf = [[rng.uniform(0.0, 6.0) for _ in range(units + 1)] for _ in range(nodes - 1)]
        lb = [[rng.uniform(0.0, 6.0) for _ in range(units + 1)] for _ in range(nodes - 1)]
    return forward, backward, memory, first, last, lf, lb


def brute_force(forward, backward, memory, limits, owners, first, last, lf, lb):
    """(best objective, its cuts) over every feasible contiguous split, or None."""
    nodes = len(forward)
    best = None
    for inner in itertools.combinations(range(first + 1, last), nodes - 1):
        cuts = (first, *inner, last)
        held = [owners * sum(memory[a:b]) for a, b in zip(cuts, cuts[1:])]
        if any(h > lim for h, lim in zip(held, limits)):
            continue
        value = mpsl_objective(cuts, forward, backward, lf, lb)[0]
        if best is None or value < best[0]:
            best = (value, cuts)
    return best


CASES = [(seed, units, nodes, links) for seed, (units, nodes, links) in enumerate(
    [(u, n, lk) for u in (4, 7, 12) for n in (1, 2, 3, 4) for lk in (False, True) if u - 2 >= n]
    + [(12, 4, lk) for lk in (False, True) for _ in range(4)]
)]


@pytest.mark.parametrize(("seed", "units", "nodes", "links"), CASES)
def test_ilp_matches_brute_force_and_respects_memory(seed: int, units: int, nodes: int, links: bool) -> None:
    rng = random.Random(seed)
    forward, backward, memory, first, last, lf, lb = instance(rng, units, nodes, links)
    owners = rng.randint(1, 4)
    middle = owners * sum(memory[first:last])
    for tightness in (math.inf, 0.9, 0.5, 0.3):  # from unlimited to (often) infeasible
        limits = [math.inf if math.isinf(tightness) else middle * tightness * rng.uniform(0.6, 1.4)
                  for _ in range(nodes)]
        expected = brute_force(forward, backward, memory, limits, owners, first, last, lf, lb)
        if expected is None:
            with pytest.raises(ValueError, match="^memory limits infeasible") as info:
                solve_mpsl_cuts(forward, backward, memory, limits, owners=owners, first_cut=first,
                                last_cut=last, link_forward=lf, link_backward=lb)
            assert "\n" not in str(info.value)
            continue
        got = solve_mpsl_cuts(forward, backward, memory, limits, owners=owners, first_cut=first,
                              last_cut=last, link_forward=lf, link_backward=lb)
        assert got.objective_s == pytest.approx(expected[0], rel=1e-7), (got.cuts, expected[1])
        assert got.cuts[0] == first and got.cuts[-1] == last
        assert all(b > a for a, b in zip(got.cuts, got.cuts[1:]))
        for held, limit in zip(got.memory_bytes, limits):
            assert held <= limit * (1 + 1e-9)


def test_paper_objective_is_slowest_forward_plus_slowest_backward() -> None:
    forward = [[1, 2, 3, 4], [1, 1, 1, 1]]
    backward = [[2, 2, 2, 2], [5, 1, 1, 1]]
    value, fwd, bwd = mpsl_objective((1, 2, 4), forward, backward)
    assert fwd == [2, 2] and bwd == [2, 2] and value == 4


def test_infeasible_limit_names_the_node_and_the_smallest_part() -> None:
    memory = [1e6, 3.2e6, 2e6, 5e6, 1e6]
    with pytest.raises(ValueError) as info:
        solve_mpsl_cuts([[1.0] * 5] * 2, [[1.0] * 5] * 2, memory, [1e6, 1e9], owners=16, first_cut=1, last_cut=4)
    text = str(info.value)
    assert text.startswith("memory limits infeasible: compute0 limit 1.0 MB < smallest possible part")
    assert "unit 1 x 16 owners" in text or "unit 2 x 16 owners" in text
    assert "\n" not in text


def test_too_few_units_for_the_nodes_is_an_error() -> None:
    with pytest.raises(ValueError, match="only 2 units"):
        solve_mpsl_cuts([[1.0] * 5] * 3, [[1.0] * 5] * 3, [1.0] * 5, None, owners=1, first_cut=1, last_cut=3)
