"""The predictor is the emulator's timeline without tensors: with profile timing and the same
profiles, every span (resource, start, end, bytes) and every epoch time are the same."""

from pathlib import Path

import pytest

from splitpipe.config import RunConfig
from splitpipe.engine.predict import node_profiles, predict_epoch
from splitpipe.experiment import emulate, prepare
from splitpipe.profile import Profile
from splitpipe.setup import setup_profiles

DATA = "synthetic:channels=1,image_size=8,train_size=120,test_size=10"

TECHNIQUES = {
    "fl": {},
    "sl": {},
    "sfl": {},
    "pipelearn": {"micro_batches": 3},
    "pipelearn-per-device": {"device_splits": (1, 3, 2), "device_micro_batches": (2, 4, 1)},
    "mpsl": {"compute_nodes": 2, "micro_batches": 2},
    "ftpipehd": {"stage_speeds": (1, 0.5, 2), "micro_batches": 4, "network": ("4g", "wifi")},
}


def spans_key(spans):
    return [(s.resource, s.category, s.owner, s.part, s.step, s.micro_batch, s.bytes, s.label) for s in spans]


@pytest.mark.parametrize("name", list(TECHNIQUES))
def test_prediction_equals_emulation_in_profile_timing(name: str, profile_file) -> None:
    path = profile_file("vgg5", DATA)
    technique = name.split("-")[0]
    options = {"device_speed": (0.2, 0.5, 1), "network": ("4g", "wifi", "4g+")} | TECHNIQUES[name]
    config = RunConfig(technique=technique, dataset=DATA, devices=3, batch_size=16, epochs=2, aggregation_interval=2,
                       timing="profile", profile=str(path), progress=False, **options)
    setup = prepare(config)
    result = emulate(setup)
    profiles = node_profiles(setup.plan.topology, Profile.load(path))
    for epoch, row in enumerate(result.report["epochs"]):
        emulated = [s for s in result.spans if s.epoch == epoch]
        predicted = predict_epoch(setup.plan, profiles, epoch)
        assert spans_key(predicted.spans) == spans_key(emulated)
        for p, e in zip(predicted.spans, emulated):
            assert (p.start, p.end) == pytest.approx((e.start, e.end), rel=1e-12, abs=1e-12)
        assert predicted.time_s == pytest.approx(row["time_s"], rel=1e-12)
        assert predicted.bound_s == pytest.approx(row["bound_s"], rel=1e-12)
        assert row["predicted_time_s"] == pytest.approx(row["time_s"], rel=1e-12)
    assert any(s.category == "aggregate" for s in result.spans if s.epoch == 1) or technique == "ftpipehd"


def test_device_and_server_profiles_combine(profile_file, tmp_path: Path) -> None:
    base = Profile.load(profile_file("vgg5", DATA))
    device, server = tmp_path / "device.json", tmp_path / "server.json"
    device.write_text(base.scaled(0.25).to_json())  # a device 4x slower than the profiled host
    server.write_text(base.scaled(8.0).to_json())  # a server 8x faster
    config = RunConfig(dataset=DATA, devices=2, device_speed=(1,), batch_size=16, epochs=1, timing="profile",
                       device_profile=str(device), server_profile=str(server), progress=False)
    setup = prepare(config)
    profiles = setup_profiles(setup)
    assert profiles["device0"].units[0].step_s == pytest.approx(base.units[0].step_s * 4)
    assert profiles["server"].units[0].step_s == pytest.approx(base.units[0].step_s / 8)
    row = emulate(setup).report["epochs"][0]
    assert row["predicted_time_s"] == pytest.approx(row["time_s"], rel=1e-12)
    faster = predict_epoch(setup.plan, node_profiles(setup.plan.topology, base.scaled(8.0)))
    assert faster.time_s < row["time_s"]  # the slow devices count


def test_a_profile_of_another_model_is_refused(profile_file) -> None:
    setup = prepare(RunConfig(model="resnet18", dataset=DATA, devices=2, batch_size=16, progress=False))
    with pytest.raises(ValueError, match="units"):
        predict_epoch(setup.plan, Profile.load(profile_file("vgg5", DATA)))


def test_a_calibrated_profile_adds_its_costs_to_every_action(profile_file) -> None:
    from dataclasses import replace

    from splitpipe.engine.predict import profile_timing
    from splitpipe.schedules.ir import BACKWARD, FORWARD, Action

    base = Profile.load(profile_file("vgg5", DATA))
    calibrated = replace(base, calibration={"F": (0.002, 0.5)})
    assert Profile.from_json(calibrated.to_json()) == calibrated
    setup = prepare(RunConfig(dataset=DATA, devices=2, device_speed=(0.5,), batch_size=16, progress=False))
    plain = profile_timing(setup.plan, node_profiles(setup.plan.topology, base))
    fitted = profile_timing(setup.plan, node_profiles(setup.plan.topology, calibrated))
    forward, backward = Action(FORWARD, part=1, samples=8), Action(BACKWARD, part=1, samples=8)
    assert fitted.duration("device0", forward) == pytest.approx(plain.duration("device0", forward) * 1.5 + 0.002 / 0.5)
    assert fitted.duration("device0", backward) == plain.duration("device0", backward)
    assert calibrated.scaled(2.0).calibration == {"F": (0.001, 0.5)}


def test_a_calibration_by_place_serves_its_place_and_the_op_the_rest(profile_file) -> None:
    """The first part gathers data, the last computes the loss: each place may have its own costs."""
    from dataclasses import replace

    from splitpipe.engine.predict import profile_timing
    from splitpipe.schedules.ir import FORWARD, Action

    base = Profile.load(profile_file("vgg5", DATA))
    calibrated = replace(base, calibration={"F": (0.001, 0.0), "F:first": (0.003, 0.0)})
    assert [base.place(r) for r in (range(0, 2), range(2, 5), range(1, 3), range(0, 5))] == \
        ["first", "last", "middle", ""]
    setup = prepare(RunConfig(dataset=DATA, devices=2, device_speed=(1.0,), batch_size=16, split=2, progress=False))
    plain = profile_timing(setup.plan, node_profiles(setup.plan.topology, base))
    fitted = profile_timing(setup.plan, node_profiles(setup.plan.topology, calibrated))
    first, last = Action(FORWARD, part=0, samples=8), Action(FORWARD, part=1, samples=8)
    assert fitted.duration("device0", first) == pytest.approx(plain.duration("device0", first) + 0.003)
    assert fitted.duration("server", last) == pytest.approx(plain.duration("server", last) + 0.001)


def test_the_host_profile_a_run_predicts_from_is_calibrated() -> None:
    setup = prepare(RunConfig(dataset=DATA, devices=2, batch_size=8, progress=False))
    profile = next(iter(setup_profiles(setup).values()))
    assert {"F", "B", "F:first", "F:last", "B:last"} <= set(profile.calibration)
