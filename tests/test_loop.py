"""The run loop: segments change nothing by themselves, a plan change at a step boundary carries
the weights over, and a technique that can go on without a data owner does."""

from dataclasses import replace
from pathlib import Path

import pytest
import torch

from splitpipe.config import RunConfig
from splitpipe.engine.emulate import TensorExecutor
from splitpipe.engine.emulator import EmulatorEngine
from splitpipe.engine.timing import MeasuredTiming
from splitpipe.experiment import emulate, prepare
from splitpipe.loop import PlanChange
from splitpipe.schedules import TECHNIQUES, Segment, build_schedule, technique

PROFILE = str(Path(__file__).parent / "golden_reports" / "profile_vgg5_digits.json")
BASE = dict(dataset="digits", devices=2, batch_size=64, epochs=2, progress=False, timing="profile")


def _config(technique_name: str, **extra: object) -> RunConfig:
    """FTPipeHD without its re-partitioning: a re-partition is a plan change of its own, checked at
    segment boundaries, so shorter segments may move it (tests/schedules/test_ftpipehd_repartition.py)."""
    shapes = {"mpsl": {"cuts": (1, 2, 4), "micro_batches": 2}, "ftpipehd": {"cuts": (1, 3), "micro_batches": 2,
                                                                        "repartition_every": 0},
              "pipelearn": {"split": 2, "micro_batches": 2}, "sfl": {"split": 2}}
    values = {**BASE, **shapes.get(technique_name, {}), **extra}
    return RunConfig(technique=technique_name, **values)  # type: ignore[arg-type]


def _weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("name", ["fl", "sfl", "pipelearn", "mpsl", "ftpipehd"])
def test_segments_alone_change_no_weight(name: str) -> None:
    """Cutting epochs into segments of 3 mini-batches is a barrier, not a change of training.
    400 samples per owner: 7 mini-batches of 64 an epoch, the last one short, in segments of 3, 3 and 1."""
    whole = emulate(prepare(_config(name, samples_per_device=400)))
    cut = emulate(prepare(_config(name, samples_per_device=400)), segment_steps=3)
    assert whole.model is not None and cut.model is not None
    for key, value in _weights(whole.model).items():
        torch.testing.assert_close(_weights(cut.model)[key], value, msg=key)
    assert cut.report["epochs"][0]["time_s"] >= whole.report["epochs"][0]["time_s"] * 0.999


def test_a_new_split_at_a_step_boundary_carries_every_weight_over() -> None:
    setup = prepare(_config("pipelearn"))
    executor = TensorExecutor(setup.model, setup.plan, setup.dataset, setup.shards,
                              MeasuredTiming({n: 1.0 for n in setup.topology.names}))
    engine = EmulatorEngine(executor, evaluate=False)
    old = setup.plan
    first = Segment(0, 0, 3)
    engine.run_segment(old, build_schedule(old, first), first)
    before = _weights(executor.global_model(build_schedule(old, 0)))
    new = replace(old, cuts=(3,))
    engine.adopt(old, new, {0: 0, 1: 1})
    after = _weights(executor.global_model(build_schedule(new, 0)))
    assert before.keys() == after.keys()
    for key in before:
        torch.testing.assert_close(after[key], before[key], msg=key)
    momentum = [opt.state for _, opt in executor.replicas.values()]
    assert all(state for state in momentum), "optimizer state must move with the layers"
    rest = Segment(0, 3)
    engine.run_segment(new, build_schedule(new, rest), rest)  # training goes on under the new cut
    assert engine.finish_epoch(new, build_schedule(new, rest), 0)["train_loss"] > 0


@pytest.mark.parametrize("name", ["sfl", "pipelearn", "fl", "mpsl"])
def test_a_dropped_owner_leaves_the_rest_training(name: str) -> None:
    setup = prepare(_config(name, devices=3))
    record = technique(name)
    assert record.replan is not None

    def drop_device1(plan, segment, boundary):  # type: ignore[no-untyped-def]
        if segment.epoch == 0 and segment.stop == 2 and "device1" in plan.owners:
            new, owners = record.replan(plan, ["device1"])
            return PlanChange(new, "device1 dropped", owners)
        return None

    result = emulate(setup, segment_steps=2, controller=drop_device1)
    events = result.report["events"]
    assert [e["event"] for e in events] == ["device1 dropped"] and events[0]["step"] == 2
    last = result.report["epochs"][-1]
    assert "device1" not in last["idle_s"] and "device2" in last["idle_s"]
    assert last["test_accuracy"] > 0.5


def test_every_technique_can_replan() -> None:
    assert all(technique(name).replan is not None for name in TECHNIQUES)


def test_a_failed_owner_is_dropped_and_the_rest_train_to_90_percent() -> None:
    config = RunConfig(technique="pipelearn", dataset="digits", devices=4, batch_size=16, micro_batches=4, epochs=4,
                       progress=False, timing="profile", profile=PROFILE)
    clean = emulate(prepare(config.with_(epochs=1)))  # epoch 0 alone: its profile time does not depend on later ones
    halfway = clean.report["epochs"][0]["time_s"] / 2
    result = emulate(prepare(config.with_(fail=(f"device2@{halfway}",))))
    event, dropout = result.report["events"]
    assert event["event"] == "failure" and event["nodes"] == ["device2"] and event["epoch"] == 0
    assert dropout == {**event, "event": "dropout", "time_s": dropout["time_s"]}  # out of FedAvg from now on
    assert dropout["time_s"] >= event["time_s"]
    rows = result.report["epochs"]
    assert rows[0]["participants"] == ["device0", "device1", "device3"]
    assert rows[-1]["test_accuracy"] >= 0.9
    assert rows[0]["time_s"] > clean.report["epochs"][0]["time_s"]  # the lost work stays on the clock


def test_a_failed_server_stops_the_run_with_one_line() -> None:
    config = RunConfig(technique="sfl", dataset="digits", devices=2, epochs=1, progress=False, timing="profile",
                       fail=("server@0.5",))
    with pytest.raises(RuntimeError, match="server failed: sfl cannot go on without server") as caught:
        emulate(prepare(config))
    assert len(str(caught.value).splitlines()) == 1


def test_a_rejoined_owner_trains_again_from_the_next_epoch() -> None:
    config = RunConfig(technique="sfl", dataset="digits", devices=3, batch_size=16, epochs=3, progress=False,
                       timing="profile", profile=PROFILE, fail=("device1@0.01",), rejoin=("device1@0.02",),
                       samples_per_device=160)  # 10 steps an epoch
    rows = emulate(prepare(config)).report["epochs"]
    assert rows[0]["participants"] == ["device0", "device2"]
    assert rows[1]["participants"] == ["device0", "device1", "device2"]


def test_fail_naming_no_node_is_refused() -> None:
    with pytest.raises(ValueError, match="fail names device9, not a node"):
        emulate(prepare(RunConfig(devices=2, epochs=1, progress=False, fail=("device9@1",))))


def _straggler_run(deadline: float | None) -> dict:
    config = RunConfig(technique="fl", dataset="digits", devices=3, batch_size=64, epochs=2, progress=False,
                       timing="profile", profile=PROFILE, device_speed=(1.0, 1.0, 0.2), round_deadline=deadline,
                       samples_per_device=192)  # 3 steps an epoch
    result = emulate(prepare(config))
    return {"report": result.report, "spans": result.spans}


def test_an_owner_past_the_round_deadline_is_left_out_of_that_round_and_trains_again_in_the_next() -> None:
    run = _straggler_run(None)
    free = run["report"]
    ends: dict[str, float] = {}
    for span in run["spans"]:
        if span.epoch == 0 and span.category == "step":
            ends[span.resource] = max(ends.get(span.resource, 0.0), span.end)
    assert ends["device2"] > 2 * ends["device1"]  # device2 trains at a fifth of the speed
    met = _straggler_run(2 * ends["device2"])["report"]
    keys = ("time_s", "train_loss", "test_accuracy", "participants")
    assert "events" not in met  # a deadline everyone meets changes nothing
    assert [[e[k] for k in keys] for e in met["epochs"]] == [[e[k] for k in keys] for e in free["epochs"]]
    late = _straggler_run(2 * ends["device1"])
    report = late["report"]
    assert [(e["event"], e["epoch"], e["nodes"]) for e in report["events"]] == [
        ("deadline_miss", 0, ["device2"]), ("deadline_miss", 1, ["device2"])]
    assert [e["participants"] for e in report["epochs"]] == [["device0", "device1"]] * 2
    trained = {(s.epoch, s.resource) for s in late["spans"] if s.category == "forward"}
    assert (1, "device2") in trained  # not dropped: it gets the average and trains the next round
    assert [e["time_s"] for e in report["epochs"]] == pytest.approx([e["time_s"] for e in free["epochs"]])
    assert report["epochs"][0]["train_loss"] == free["epochs"][0]["train_loss"]  # the same work, ...
    assert report["epochs"][1]["train_loss"] != free["epochs"][1]["train_loss"]  # ... another average


def test_emulate_takes_the_compute_durations_it_is_given() -> None:
    # bench/kernel_links.py replays a real run's durations this way
    class Fixed(MeasuredTiming):
        def duration(self, node: str, action: object, measured_s: float) -> float:
            return 0.25

    result = emulate(prepare(_config("sfl", epochs=1, profile=PROFILE, samples_per_device=128)), timing=Fixed({}))
    computes = [s for s in result.spans if not s.is_link]
    assert computes and all(s.duration == pytest.approx(0.25) for s in computes)
