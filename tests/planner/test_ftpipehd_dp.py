"""FTPipeHD's min-max DP: the optimum of brute force on small random instances."""

import itertools
import math
import random

import pytest

from splitpipe.planner.ftpipehd_dp import bottleneck_of, partition_min_max


def brute_force(compute, link, memory=None, limits=None) -> float:
    stages, units = len(compute), len(compute[0])
    values = [bottleneck_of(cuts, compute, link, memory, limits)[0]
              for cuts in itertools.combinations(range(1, units), stages - 1)]
    return min(values)


CASES = [(seed, units, stages) for seed, (units, stages) in enumerate(
    (u, s) for u in (2, 5, 9, 12) for s in (1, 2, 3, 4) if s <= u
)]


@pytest.mark.parametrize(("seed", "units", "stages"), CASES)
@pytest.mark.parametrize("with_links", [False, True])
def test_dp_matches_brute_force(seed: int, units: int, stages: int, with_links: bool) -> None:
    rng = random.Random(seed * 2 + with_links)
    base = [rng.uniform(0.1, 10.0) for _ in range(units)]
    capacity = [rng.uniform(0.1, 10.0) for _ in range(stages)]  # heterogeneous devices
    compute = [[t / c for t in base] for c in capacity]
    link = [[rng.uniform(0.0, 8.0) for _ in range(units + 1)] for _ in range(stages - 1)] if with_links else None
    got = partition_min_max(compute, link)
    assert got.bottleneck_s == pytest.approx(brute_force(compute, link), rel=1e-12)
    assert len(got.cuts) == stages - 1 and list(got.cuts) == sorted(set(got.cuts))
    assert bottleneck_of(got.cuts, compute, link)[0] == got.bottleneck_s


@pytest.mark.parametrize("seed", range(6))
def test_dp_with_memory_limits_never_exceeds_them(seed: int) -> None:
    rng = random.Random(100 + seed)
    units, stages = 10, 3
    compute = [[rng.uniform(0.1, 5.0) for _ in range(units)] for _ in range(stages)]
    memory = [rng.uniform(1.0, 10.0) for _ in range(units)]
    limits = [sum(memory) * rng.uniform(0.2, 0.6) for _ in range(stages)]
    feasible = brute_force(compute, None, memory, limits)
    if math.isinf(feasible):
        with pytest.raises(ValueError, match="^memory limits infeasible"):
            partition_min_max(compute, None, memory, limits)
        return
    got = partition_min_max(compute, None, memory, limits)
    assert got.bottleneck_s == pytest.approx(feasible)
    bounds = [0, *got.cuts, units]
    assert all(sum(memory[a:b]) <= limits[s] for s, (a, b) in enumerate(zip(bounds, bounds[1:])))


def test_slow_stage_gets_fewer_units() -> None:
    compute = [[1.0] * 8, [4.0] * 8]  # stage 1 is four times slower
    assert partition_min_max(compute).cuts == (7,)  # max(7, 4 x 1) beats max(6, 4 x 2)


def test_more_stages_than_units_is_an_error() -> None:
    with pytest.raises(ValueError, match="3 stages"):
        partition_min_max([[1.0, 1.0]] * 3)
