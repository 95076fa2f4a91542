"""planner/calibrate.py's fit, on runs whose measured times follow a known calibration exactly."""

from dataclasses import replace

import pytest

from splitpipe.data import load_dataset
from splitpipe.engine.predict import node_profiles, profile_timing
from splitpipe.models import build_model
from splitpipe.planner.calibrate import _fit, _plan, fit_calibration
from splitpipe.schedules import build_schedule

from .conftest import fake_profile

#: What the runs cost beyond the units: (fixed seconds, ratio) per op and place.
TRUE = {"F:first": (2e-3, 0.25), "F:last": (1e-3, 0.1), "B:first": (5e-4, 0.0), "B:last": (1.5e-3, 0.3)}


def test_the_fit_recovers_a_known_calibration_per_place() -> None:
    data = load_dataset("digits")
    net = build_model("vgg5", data.in_channels, data.image_size, data.num_classes)
    profile = fake_profile(net, tuple(data.x_train.shape[1:]), "vgg5")
    truth = replace(profile, calibration=TRUE)
    runs = []
    for split in (1, 2, 4):
        for micro_batches in (1, 4, 8):
            plan = _plan(len(profile.units), split, 16, micro_batches, steps=2)
            timing = profile_timing(plan, node_profiles(plan.topology, truth))
            seen = [(node, action, timing.duration(node, action))
                    for node, _, action in build_schedule(plan, 1).actions() if action.op in "FB" and action.is_compute]
            runs.append((plan, seen))
    fitted = fit_calibration(profile, runs).calibration
    for key, (fixed, ratio) in TRUE.items():
        assert fitted[key] == (pytest.approx(fixed, rel=1e-6, abs=1e-9), pytest.approx(ratio, rel=1e-6, abs=1e-9))


def _runs(profile, truth, splits=(1, 2, 4), counts=(1, 4, 8)):
    """Runs whose forwards and backwards take exactly what `truth` charges them."""
    runs = []
    for split in splits:
        for micro_batches in counts:
            plan = _plan(len(profile.units), split, 16, micro_batches, steps=2)
            timing = profile_timing(plan, node_profiles(plan.topology, truth))
            seen = [(node, action, timing.duration(node, action))
                    for node, _, action in build_schedule(plan, 1).actions() if action.op in "FB" and action.is_compute]
            runs.append((plan, seen))
    return runs


def _vgg5_profile():
    data = load_dataset("digits")
    net = build_model("vgg5", data.in_channels, data.image_size, data.num_classes)
    return fake_profile(net, tuple(data.x_train.shape[1:]), "vgg5")


def test_the_fit_recovers_a_per_unit_term_of_either_sign() -> None:
    """A unit timed alone pays its own call (fewer per unit in a part: negative), the executor per unit
    what the profile misses (positive); the fit finds either beside the fixed cost and the ratio."""
    profile = _vgg5_profile()
    per_unit = {"F:first": 4e-4, "F:last": -2e-4, "B:first": 3e-4, "B:last": -1e-4}
    truth = replace(profile, calibration=TRUE, calibration_per_unit=per_unit)
    fitted = fit_calibration(profile, _runs(profile, truth))
    for key, (fixed, ratio) in TRUE.items():
        assert fitted.calibration[key] == (pytest.approx(fixed, rel=1e-6, abs=1e-9), pytest.approx(ratio, rel=1e-6, abs=1e-9))
        assert fitted.calibration_per_unit[key] == pytest.approx(per_unit[key], rel=1e-6, abs=1e-9)


def test_a_per_unit_term_predicts_splits_and_sizes_the_runs_did_not_see() -> None:
    """Fitted on splits 1, 2, 4 at 16, 4 and 2 samples; checked at split 3 and 8 and 1 samples."""
    profile = _vgg5_profile()
    truth = replace(profile, calibration=TRUE, calibration_per_unit={"F:first": 5e-4, "B:last": -1e-4})
    fitted = fit_calibration(profile, _runs(profile, truth))
    (plan, seen), = _runs(profile, truth, splits=(3,), counts=(2, 16))[:1]
    timing = profile_timing(plan, node_profiles(plan.topology, fitted))
    for node, action, expected in seen:
        assert timing.duration(node, action) == pytest.approx(expected, rel=1e-6)


def test_without_a_per_unit_cost_the_term_stays_zero() -> None:
    """Per place (the place-free fit mixes places whose fixed costs differ, which the term may take up)."""
    profile = _vgg5_profile()
    fitted = fit_calibration(profile, _runs(profile, replace(profile, calibration=TRUE)))
    assert all(abs(fitted.calibration_per_unit[key]) < 1e-9 for key in TRUE)


def test_one_size_of_part_fits_no_per_unit_term() -> None:
    """All points of one part size: units cannot be told from the fixed cost, so no per-unit term."""
    fixed, ratio, per_unit = _fit([(1e-3, 1.5e-3, 2), (2e-3, 2.7e-3, 2), (4e-3, 5.1e-3, 2), (8e-3, 9.9e-3, 2)])
    assert per_unit == 0.0
    assert (fixed, ratio) == (pytest.approx(3e-4), pytest.approx(0.2))


def _points(per_unit: float) -> list[tuple[float, float, int]]:
    """Parts of 1, 2 and 4 units at three sizes: measured = 1.1 x profiled + 0.2 ms + per_unit x units,
    with +-3% of noise that sums to nothing within each part size."""
    noise = (0.03, -0.03, 0.0)
    return [(p * units, (1.1 * p * units + 2e-4 + per_unit * units) * (1 + noise[i]), units)
            for units in (1, 2, 4) for i, p in enumerate((1e-3, 3e-3, 9e-3))]


def test_a_per_unit_term_that_explains_only_noise_is_left_out() -> None:
    assert _fit(_points(0.0))[2] == 0.0


def test_a_per_unit_term_above_the_noise_is_kept() -> None:
    fixed, ratio, per_unit = _fit(_points(1e-3))
    assert per_unit == pytest.approx(1e-3, rel=0.3)
