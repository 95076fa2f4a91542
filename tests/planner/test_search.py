"""PipeLearn's search: the grid's optimum, per-device choices never worse, estimates close."""

import pytest

from splitpipe.config import RunConfig
from splitpipe.engine.predict import node_profiles, predict_epoch
from splitpipe.experiment import prepare
from splitpipe.planner import choose_split, micro_batch_choices, plan_for
from splitpipe.planner.estimate import estimate_epoch_s
from splitpipe.planner.pipelearn import with_choices
from splitpipe.profile import Profile


def setup_and_profiles(profile_file, train: int, **options):
    data = f"synthetic:channels=1,image_size=8,train_size={train},test_size=10"
    base = {"dataset": data, "devices": 3, "batch_size": 16, "device_speed": "0.1,0.5,1",
            "network": "4g,wifi,4g+", "progress": False}
    setup = prepare(RunConfig(**(base | options)))
    profile = Profile.load(profile_file("vgg5", data))
    return setup, node_profiles(setup.plan.topology, profile)


def test_common_choice_is_the_best_of_the_grid(profile_file) -> None:
    setup, profiles = setup_and_profiles(profile_file, 144)
    counts = (1, 2, 4, 8)
    choice = choose_split(setup.plan, profiles, micro_batches=counts, per_device=False)
    grid = {(s, n): predict_epoch(with_choices(setup.plan, [(s, n)] * 3), profiles).time_s
            for s in range(1, 5) for n in counts}
    assert choice.common_estimate_s == pytest.approx(min(grid.values()), rel=1e-12)
    assert grid[choice.common] == pytest.approx(min(grid.values()), rel=1e-12)
    assert choice.prediction.time_s == pytest.approx(choice.common_estimate_s, rel=1e-12)
    assert not choice.per_device and choice.evaluations == len(grid)


def test_per_device_choice_is_never_worse_and_is_what_gets_predicted(profile_file) -> None:
    setup, profiles = setup_and_profiles(profile_file, 144)
    shared = choose_split(setup.plan, profiles, per_device=False)
    own = choose_split(setup.plan, profiles, per_device=True, min_gain=0.0)
    assert own.prediction.time_s <= shared.prediction.time_s * (1 + 1e-12)
    assert own.prediction.time_s == pytest.approx(own.estimate_s, rel=1e-12)
    for lane, (split, count) in enumerate(zip(own.splits, own.micro_batches)):
        assert own.plan.owner_cuts(lane) == (split,) and own.plan.owner_micro_batches(lane) == count


def test_sfl_plans_the_split_only(profile_file) -> None:
    setup, profiles = setup_and_profiles(profile_file, 96, technique="sfl")
    result = plan_for(setup.plan, profiles, per_device=False)
    assert set(result.settings) == {"split"}
    assert result.prediction.time_s <= result.baseline_s * (1 + 1e-12)


def test_long_epochs_are_extrapolated_closely(profile_file) -> None:
    setup, profiles = setup_and_profiles(profile_file, 3000)  # about 63 steps per device
    for choice in ([(1, 1)] * 3, [(3, 4)] * 3, [(2, 8), (4, 1), (1, 2)]):
        plan = with_choices(setup.plan, choice)
        exact = predict_epoch(plan, profiles).time_s
        assert estimate_epoch_s(plan, profiles, max_steps=16) == pytest.approx(exact, rel=0.03)


def test_micro_batch_choices_divide_the_batch() -> None:
    assert micro_batch_choices(32) == (1, 2, 4, 8, 16)
    assert micro_batch_choices(100) == (1, 2, 4, 5, 10, 20, 25, 50)
    assert micro_batch_choices(12, limit=12) == (1, 2, 3, 4, 6, 12)
    assert micro_batch_choices(1) == (1,)
