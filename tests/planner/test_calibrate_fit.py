"""planner/calibrate.py's fit, on runs whose measured times follow a known calibration exactly."""

from dataclasses import replace

import pytest

from splitpipe.data import load_dataset
from splitpipe.engine.predict import node_profiles, profile_timing
from splitpipe.models import build_model
from splitpipe.planner.calibrate import calibration_plan, fit_calibration
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
            plan = calibration_plan(len(profile.units), split, 16, micro_batches, steps=2)
            timing = profile_timing(plan, node_profiles(plan.topology, truth))
            seen = [(node, action, timing.duration(node, action))
                    for node, _, action in build_schedule(plan, 1).actions() if action.op in "FB" and action.is_compute]
            runs.append((plan, seen))
    fitted = fit_calibration(profile, runs).calibration
    for key, (fixed, ratio) in TRUE.items():
        assert fitted[key] == (pytest.approx(fixed, rel=1e-6, abs=1e-9), pytest.approx(ratio, rel=1e-6, abs=1e-9))
