"""MP-SL survives a dead compute node: the ILP re-solves over the survivors, the lost layers come
back from the last aggregation's global model, and the interrupted segment is redone."""

from __future__ import annotations

from pathlib import Path

import torch

from splitpipe.config import RunConfig
from splitpipe.engine.emulate import TensorExecutor
from splitpipe.engine.emulator import EmulatorEngine
from splitpipe.engine.timing import MeasuredTiming
from splitpipe.experiment import emulate, prepare
from splitpipe.loop import run_loop
from splitpipe.schedules import build_schedule, technique

PROFILE = str(Path(__file__).parent.parent / "golden_reports" / "profile_vgg5_digits.json")
BASE = dict(technique="mpsl", dataset="digits", owners=3, compute_nodes=3, cuts=(1, 2, 3, 4), micro_batches=1,
            batch_size=32, network="none", progress=False, timing="profile", profile=PROFILE)


def test_the_replan_closes_the_chain_and_resolves_the_cuts_over_the_survivors() -> None:
    plan = prepare(RunConfig(**{**BASE, "epochs": 1})).plan  # type: ignore[arg-type]
    new, owners = technique("mpsl").replan(plan, ["compute1"])  # type: ignore[misc]
    assert new.chain == ("compute0", "compute2") and owners == {0: 0, 1: 1, 2: 2}
    assert new.cuts[0] == 1 and new.cuts[-1] == 4 and len(new.cuts) == 3  # owners keep their parts
    assert new.topology.link("compute0", "compute2") == plan.topology.link("compute0", "compute1")
    first, _ = technique("mpsl").replan(plan, ["compute0", "device1"])  # type: ignore[misc]
    assert first.chain == ("compute1", "compute2") and first.owners == ("device0", "device2")
    assert first.topology.link("device0", "compute1") == plan.topology.link("device0", "compute0")


def test_the_dead_nodes_layers_come_back_from_the_last_aggregation() -> None:
    setup = prepare(RunConfig(**{**BASE, "epochs": 1, "samples_per_device": 64, "timing": "measured"}))  # type: ignore[arg-type]
    plan, config = setup.plan, setup.config
    executor = TensorExecutor(setup.model, plan, setup.dataset, setup.shards,
                              MeasuredTiming({n: 1.0 for n in setup.topology.names}), lr=config.lr, seed=config.seed)
    engine = EmulatorEngine(executor, evaluate=False)
    run_loop(plan, engine, range(1))
    aggregated = executor.global_model(build_schedule(plan, 0)).state_dict()
    new, owners = technique("mpsl").replan(plan, ["compute1"])  # type: ignore[misc]
    engine.adopt(plan, new, owners)
    lost = [k for k in aggregated if k.startswith("2.")]  # unit 2 sat on compute1 alone
    holder = [(r, m) for r, (m, _) in executor.replicas.items() if lost[0] in m.state_dict()]
    assert {r.node for r, _ in holder} <= {"compute0", "compute2"} and len(holder) == len(plan.owners)
    for _, module in holder:
        for key in lost:
            assert torch.equal(module.state_dict()[key], aggregated[key]), key


def test_a_dead_compute_node_is_survived_to_90_percent_on_digits() -> None:
    report = emulate(prepare(RunConfig(**{**BASE, "epochs": 1, "lr": 0.05, "fail": ("compute1@0.1",)}))).report  # type: ignore[arg-type]
    event, recovery = report["events"]  # type: ignore[misc]
    assert (event["event"], event["nodes"], event["cuts_after"]) == ("failure", ["compute1"], [1, 2, 4])
    assert (recovery["event"], recovery["nodes"], recovery["cuts_after"]) == ("recovery", ["compute1"], [1, 2, 4])
    (row,) = report["epochs"]  # type: ignore[misc]
    assert row["cuts"] == [1, 2, 4] and row["participants"] == ["device0", "device1", "device2"]
    assert row["test_accuracy"] >= 0.9
