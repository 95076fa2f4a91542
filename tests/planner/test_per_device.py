"""Per-device splits and micro-batch counts: schedules unchanged without them, FedAvg of
whole models per unit with them, and the config keys that carry them."""

from dataclasses import replace

import pytest
import torch

from splitpipe.config import RunConfig
from splitpipe.engine.emulate import TensorExecutor
from splitpipe.engine.events import run_schedule
from splitpipe.engine.timing import MeasuredTiming
from splitpipe.experiment import emulate, prepare
from splitpipe.schedules import build_schedule
from splitpipe.schedules.fedavg import Member, fedavg
from splitpipe.schedules.ir import FORWARD, Replica, Schedule, programs_from_lists
from splitpipe.schedules.messages import add_messages
from splitpipe.schedules.validate import validate

DATA = "synthetic:channels=1,image_size=8,train_size=90,test_size=30"


def setup_for(**options):
    base = {"dataset": DATA, "devices": 3, "batch_size": 8, "epochs": 1, "progress": False}
    return prepare(RunConfig(**(base | options)))


@pytest.mark.parametrize("technique", ["sfl", "pipelearn"])
def test_same_overrides_as_the_shared_values_give_the_same_schedule(technique: str) -> None:
    plain = setup_for(technique=technique, split=2, micro_batches=3).plan
    same = setup_for(technique=technique, split=2, micro_batches=3, device_splits=(2,),
                     **({"device_micro_batches": (3, 3, 3)} if technique == "pipelearn" else {})).plan
    for epoch in (0, 1):
        assert build_schedule(same, epoch).dump() == build_schedule(plain, epoch).dump()


def test_each_device_runs_its_own_micro_batches_and_parts() -> None:
    plan = setup_for(device_splits=(1, 3, 1), device_micro_batches=(1, 2, 4)).plan
    schedule = build_schedule(plan, 0)
    units = plan.part_units()
    for lane, (cut, count) in enumerate(zip((1, 3, 1), (1, 2, 4))):
        forwards = [a for a in schedule.programs[f"device{lane}"][lane] if a.op == FORWARD and a.step == 0]
        assert len(forwards) == count
        assert {units[a.part] for a in forwards} == {range(0, cut)}
        server = [a for a in schedule.programs["server"][lane] if a.op == FORWARD]
        assert {units[a.part] for a in server} == {range(cut, plan.num_units)}


def perturbed_executor(plan, schedule: Schedule) -> TensorExecutor:
    setup = setup_for(device_splits=(1, 3, 1))
    speeds = {n.name: n.speed for n in plan.topology.nodes}
    executor = TensorExecutor(setup.model, plan, setup.dataset, setup.shards, MeasuredTiming(speeds))
    executor.begin_epoch(0, schedule)
    for k, replica in enumerate(schedule.replicas):  # every replica different
        with torch.no_grad():
            for t in executor.module(replica).state_dict().values():
                if t.is_floating_point():
                    t.add_(torch.randn_like(t) * (k + 1))
    return executor


def full_state(executor: TensorExecutor, plan, lane: int) -> dict[str, torch.Tensor]:
    """Lane `lane`'s whole model: its device part and its server replica."""
    state = {}
    for part, node in ((0, plan.owners[lane]), (1, plan.server)):
        replica = Replica(node, plan.owner_part(lane, part), lane)
        state |= {k: v.clone() for k, v in executor.module(replica).state_dict().items()}
    return state


def test_fedavg_with_different_cuts_averages_every_unit_over_all_devices() -> None:
    plan = setup_for(device_splits=(1, 3, 1)).plan
    members, replicas = [], []
    weights = plan.fedavg_weights()
    for i, device in enumerate(plan.owners):
        for part, node in ((plan.owner_part(i, 0), device), (plan.owner_part(i, 1), plan.server)):
            members.append(Member(node, i, i, part, i, weights[i]))
            replicas.append(Replica(node, part, i))
    lists: dict = {}
    fedavg(lists, members, plan.server, 0, plan.part_units())
    programs = add_messages(programs_from_lists(lists), plan.topology.links)
    schedule = validate(Schedule(programs, tuple(replicas), {}, {}))
    executor = perturbed_executor(plan, schedule)
    before = [full_state(executor, plan, i) for i in range(3)]
    expected = {}
    for key, first in before[0].items():
        if first.is_floating_point():
            expected[key] = sum(w * s[key] for s, w in zip(before, weights))
        else:
            expected[key] = torch.round(sum(w * s[key].double() for s, w in zip(before, weights))).to(first.dtype)
    assert not torch.equal(before[0]["0.0.weight"], before[1]["0.0.weight"])
    run_schedule(schedule, plan.topology, executor)
    for lane in range(3):
        after = full_state(executor, plan, lane)
        assert after.keys() == expected.keys()
        for key, value in expected.items():
            torch.testing.assert_close(after[key], value, rtol=1e-5, atol=1e-6)


def test_training_with_per_device_choices_reports_them_and_ends_in_one_model() -> None:
    setup = setup_for(device_splits=(1, 3, 2), device_micro_batches=(1, 4, 2), epochs=2)
    result = emulate(setup)
    plan = result.report["plan"]
    assert plan["device_cuts"] == [[1], [3], [2]] and plan["device_micro_batches"] == [1, 4, 2]
    assert result.report["epochs"][-1]["test_accuracy"] > 0
    assert len(result.model) == setup.plan.num_units


@pytest.mark.parametrize(("options", "named"), [
    ({"device_splits": (1, 2)}, "device-splits"),
    ({"device_splits": (1, 9, 1)}, "(9,)"),
    ({"device_micro_batches": (1, 2, 99)}, "[99]"),
    ({"technique": "sl", "device_splits": (1, 2, 1)}, "device-splits applies to sfl and pipelearn"),
    ({"technique": "sfl", "device_micro_batches": (2,)}, "device-micro-batches applies to pipelearn"),
    ({"technique": "mpsl", "device_splits": (1,)}, "device-splits applies to sfl and pipelearn, not mpsl"),
    ({"device_splits": "a,b"}, "device_splits"),
])
def test_bad_overrides_are_named(options: dict, named: str) -> None:
    with pytest.raises(ValueError) as info:
        setup_for(**options)
    assert named in str(info.value)


def test_plan_part_units_give_each_layout_its_parts() -> None:
    plan = setup_for(device_splits=(2, 1, 2)).plan
    assert plan.layouts() == ((2,), (1,))
    assert plan.part_units() == (range(0, 2), range(2, 5), range(0, 1), range(1, 5))
    assert [plan.owner_part(i, 1) for i in range(3)] == [1, 3, 1]
    assert replace(plan, extra={}).part_units() == (range(0, plan.cuts[0]), range(plan.cuts[0], 5))
