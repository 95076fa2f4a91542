"""The profile's line through all sizes (splitpipe/linefit.py): known coefficients come back from
noisy points, one wild point is left out, and nothing goes negative."""

import random

import pytest
import torch
from torch import nn

from splitpipe.linefit import fit_line, smoothed
from splitpipe.profile import measure_profile

SIZES = (1, 2, 4, 8, 16)


def test_a_line_comes_back_from_noisy_points() -> None:
    rng = random.Random(3)
    fixed, per_sample = 2e-4, 3e-4
    points = {n: (fixed + per_sample * n) * (1 + rng.uniform(-0.03, 0.03)) for n in SIZES}
    a, b = fit_line(points)
    assert a == pytest.approx(fixed, rel=0.15)
    assert b == pytest.approx(per_sample, rel=0.05)


def test_exact_points_give_the_exact_line() -> None:
    a, b = fit_line({n: 1e-3 + 5e-4 * n for n in SIZES})
    assert (a, b) == (pytest.approx(1e-3), pytest.approx(5e-4))


def test_one_wild_point_is_left_out() -> None:
    """The 4-sample point 40% high (a load spike while it was measured) does not move the line."""
    points = {n: 1e-3 + 5e-4 * n for n in SIZES}
    points[4] *= 1.4
    a, b = fit_line(points)
    assert (a, b) == (pytest.approx(1e-3), pytest.approx(5e-4))
    assert smoothed(points)[4] == pytest.approx(3e-3)


def test_nothing_goes_negative() -> None:
    # falling with the samples (noise on a constant): a constant, no negative slope
    a, b = fit_line({1: 3e-4, 2: 2.9e-4, 4: 2.8e-4, 16: 2.5e-4})
    assert b == 0 and a == pytest.approx(2.7e-4, rel=0.1)
    # a line through the points would cross zero above 1 sample: through the origin instead
    a, b = fit_line({1: 1e-5, 2: 1e-4, 4: 3e-4, 8: 7e-4})
    assert a == 0 and b > 0
    assert all(t >= 0 for t in smoothed({1: 1e-5, 2: 1e-4, 4: 3e-4, 8: 7e-4}).values())


def test_one_point_goes_through_the_origin_and_none_is_refused() -> None:
    assert fit_line({4: 2e-3}) == (0.0, pytest.approx(5e-4))
    with pytest.raises(ValueError, match="at least one"):
        fit_line({})


def test_a_measured_profile_lies_on_a_line_per_unit() -> None:
    """measure_profile fits each unit's times (the same sizes kept); fit=False keeps the medians."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU()), nn.Flatten(), nn.Linear(64, 3))
    profile = measure_profile(model, (1, 4, 4), (1, 2, 4), repeats=3, warmup=1)
    for unit in profile.units:
        for table in (unit.forward_s, unit.backward_s):
            assert sorted(table) == [1, 2, 4]
            assert min(table.values()) >= 0
            slope_low, slope_high = table[2] - table[1], (table[4] - table[2]) / 2
            assert slope_low == pytest.approx(slope_high, rel=1e-6, abs=1e-12)
    raw = measure_profile(model, (1, 4, 4), (2,), repeats=2, warmup=1, fit=False)
    assert sorted(raw.units[0].forward_s) == [2]
