"""MP-SL's ILP over heterogeneous compute nodes: any node may hold any block. Equal to brute
force over every cut and permutation on random small instances, under memory, by time and by
cost under a deadline; and better than chain order where chain order is not optimal."""

import itertools
import math
import random

import pytest

from splitpipe.planner.mpsl_assign import assignment_value, solve_mpsl_assignment
from splitpipe.planner.mpsl_ilp import mpsl_objective, solve_mpsl_cuts


def instance(rng: random.Random, units: int, nodes: int):
    speed = [rng.choice([0.25, 0.5, 1.0, 2.0, 4.0]) * rng.uniform(0.8, 1.2) for _ in range(nodes)]
    base_f = [rng.uniform(0.1, 5.0) for _ in range(units)]
    base_b = [rng.uniform(0.1, 8.0) for _ in range(units)]
    forward = [[t / s for t in base_f] for s in speed]
    backward = [[t / s for t in base_b] for s in speed]
    memory = [rng.uniform(1.0, 100.0) for _ in range(units)]
    return forward, backward, memory


def brute_force(forward, backward, memory, limits, owners, first, last, batches, prices=None, deadline=None):
    """(best value, cuts, order): fastest, or cheapest within the deadline; None when nothing fits."""
    nodes, best = len(forward), None
    for inner in itertools.combinations(range(first + 1, last), nodes - 1):
        cuts = (first, *inner, last)
        for order in itertools.permutations(range(nodes)):
            held = [owners * sum(memory[a:b]) for a, b in zip(cuts, cuts[1:])]
            if any(h > limits[i] for h, i in zip(held, order)):
                continue
            epoch, cost = assignment_value(cuts, order, forward, backward, batches=batches, prices=prices)
            if deadline is not None and epoch > deadline * (1 + 1e-9):
                continue
            value = epoch if prices is None else cost
            if best is None or value < best[0]:
                best = (value, cuts, order)
    return best


CASES = [(seed, units, nodes) for seed, (units, nodes) in enumerate(
    [(u, n) for u in (4, 6, 8) for n in (1, 2, 3) if u - 2 >= n] + [(8, 4)] * 3)]


@pytest.mark.parametrize(("seed", "units", "nodes"), CASES)
def test_assignment_matches_brute_force(seed: int, units: int, nodes: int) -> None:
    rng = random.Random(seed)
    forward, backward, memory = instance(rng, units, nodes)
    owners, first, last = rng.randint(1, 4), 1, units - 1
    batches = rng.choice([2, 10, 100])
    middle = owners * sum(memory[first:last])
    for tightness in (math.inf, 0.7, 0.4):
        limits = [math.inf if math.isinf(tightness) else middle * tightness * rng.uniform(0.5, 1.5)
                  for _ in range(nodes)]
        expected = brute_force(forward, backward, memory, limits, owners, first, last, batches)
        if expected is None:
            with pytest.raises(ValueError, match="^no assignment of units"):
                solve_mpsl_assignment(forward, backward, memory, limits, owners=owners, first_cut=first,
                                      last_cut=last, batches=batches)
            continue
        got = solve_mpsl_assignment(forward, backward, memory, limits, owners=owners, first_cut=first,
                                    last_cut=last, batches=batches)
        assert got.time_s == pytest.approx(expected[0], rel=1e-6), (got, expected)
        for (a, b), i in zip(zip(got.cuts, got.cuts[1:]), got.order):
            assert owners * sum(memory[a:b]) <= limits[i] * (1 + 1e-9)


@pytest.mark.parametrize("seed", range(6))
def test_cheapest_within_the_deadline_matches_brute_force(seed: int) -> None:
    rng = random.Random(100 + seed)
    forward, backward, memory = instance(rng, 7, 3)
    prices = [rng.uniform(0.5, 4.0) for _ in range(3)]
    fastest = brute_force(forward, backward, memory, [math.inf] * 3, 1, 1, 6, 10)[0]
    deadline = fastest * rng.uniform(1.0, 1.6)
    expected = brute_force(forward, backward, memory, [math.inf] * 3, 1, 1, 6, 10, prices, deadline)
    got = solve_mpsl_assignment(forward, backward, memory, None, owners=1, first_cut=1, last_cut=6, batches=10,
                                prices=prices, deadline_s=deadline)
    assert got.cost == pytest.approx(expected[0], rel=1e-6)
    assert got.time_s <= deadline * (1 + 1e-6)


def test_beats_chain_order_where_it_is_not_optimal() -> None:
    """The heavy first block wants the fast node, which sits last in the chain."""
    forward = [[1, 9, 1, 1, 1, 1], [1, 9, 1, 1, 1, 1], [w / 4 for w in (1, 9, 1, 1, 1, 1)]]
    backward = [[2 * w for w in row] for row in forward]
    memory = [1.0] * 6
    chain = solve_mpsl_cuts(forward, backward, memory, None, owners=1, first_cut=1, last_cut=5)
    free = solve_mpsl_assignment(forward, backward, memory, None, owners=1, first_cut=1, last_cut=5)
    chain_epoch, _ = assignment_value(chain.cuts, (0, 1, 2), forward, backward, batches=2)
    assert free.order[0] == 2 and free.time_s < chain_epoch * 0.7
    assert mpsl_objective(chain.cuts, forward, backward)[0] > 2 * 9 * 3 / 4
