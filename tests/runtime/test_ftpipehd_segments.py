"""A real FTPipeHD run re-partitions mid-epoch from the capacities it measures: a worker slowed ten
times by --speed-change (node.py's speed_over_time, whose clock every node starts at training's
first start) loses layers, the layers and their momentum move
through the coordinator's hand-off, and the run ends with the weights of an emulator run that
makes the same cut changes at the same steps.

The cluster runs in threads on in-process transports; each segment of `EVERY` steps is prepared,
started and reported on every node (protocol.py (4), (5)).
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Any, cast

import torch

from splitpipe.checkpoint import Checkpoints, latest_checkpoint, read_checkpoint
from splitpipe.engine.emulate import TensorExecutor
from splitpipe.engine.emulator import EmulatorEngine
from splitpipe.engine.timing import MeasuredTiming
from splitpipe.loop import Boundary, PlanChange, run_loop
from splitpipe.plan import Plan
from splitpipe.runtime.coordinator import Coordinator
from splitpipe.runtime.node import SpeedClock, speed_over_time
from splitpipe.runtime.threads import run_in_threads
from splitpipe.runtime.transport import make_local_transports
from splitpipe.schedules import Segment
from splitpipe.schedules.ftpipehd_replan import UNIT_S
from splitpipe.schedules.ir import Replica
from splitpipe.setup import Setup

from .test_equality import small_setup

EVERY = 3  # 12 steps an epoch: four segments


def replaying(events: list[dict[str, Any]]) -> Any:
    """A controller that makes the real run's re-partitions where it made them (epoch, step)."""
    changes = {(e["epoch"], e["step"]): tuple(e["cuts_after"]) for e in events if e["event"] == "repartition"}

    def controller(plan: Plan, segment: Segment, boundary: Boundary) -> PlanChange | None:
        cuts = changes.get((segment.epoch, segment.stop))
        return None if cuts is None else PlanChange(replace(plan, cuts=cuts), "repartition")
    return controller


def emulated(setup: Setup, events: list[dict[str, Any]]) -> dict[Replica, dict[str, torch.Tensor]]:
    plan, config = setup.plan, setup.config
    executor = TensorExecutor(setup.model, plan, setup.dataset, setup.shards,
                              MeasuredTiming({n: 1.0 for n in setup.topology.names}),
                              lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay,
                              seed=config.seed)
    result = run_loop(plan, EmulatorEngine(executor, evaluate=False), range(config.epochs), segment_steps=EVERY,
                      controller=replaying(events))
    assert [e["cuts_after"] for e in result.events] == [e["cuts_after"] for e in events]
    return {r: executor.module(r).state_dict() for r in executor.replicas}


def test_a_slowed_worker_loses_layers_and_the_weights_are_the_emulators(tiny_npz: str) -> None:
    setup = small_setup("ftpipehd", tiny_npz, stages=3, micro_batches=2, repartition_every=EVERY,
                        speed_change=("worker1@0=0.1",))
    node, at, speed = setup.config.speed_changes()[0]
    slowed = speed_over_time(1.0, [(at, speed)])  # 1.0 until anchored: a member that did not anchor keeps its layers
    own = SpeedClock(1.0, [(1e9, 1.0)])  # the coordinator's, never changing
    began = time.time()
    result = run_in_threads(setup, timeout=60, speeds={node: slowed}, speed=own)
    ended = time.time()
    assert isinstance(slowed, SpeedClock) and slowed.started is not None and began <= slowed.started <= ended
    assert own.started is not None and began <= own.started <= ended
    events = cast(list[dict[str, Any]], result.report["events"])
    first = events[0]
    assert first["event"] == "repartition" and (first["step"] or 0) % EVERY == 0, events  # None: an epoch's end
    assert first["cuts_before"] == list(setup.plan.cuts)
    held = [cuts[1] - cuts[0] for cuts in (first["cuts_before"], first["cuts_after"])]  # worker1's units
    assert held[1] < held[0], events
    rows = cast(list[dict[str, Any]], result.report["epochs"])
    assert rows[-1]["cuts"] == events[-1]["cuts_after"] != list(setup.plan.cuts)
    moved = [s for s in result.spans if s.label == "move"]  # the hand-off's transfers, on the run's clock
    assert {s.resource for s in moved} >= {"worker1->central", "central->worker1"} and sum(s.bytes for s in moved) > 0
    expected = emulated(setup, events)
    assert sorted(result.states, key=repr) == sorted(expected, key=repr)
    for replica, state in expected.items():
        for key, tensor in state.items():
            torch.testing.assert_close(result.states[replica][key], tensor, rtol=1e-5, atol=1e-6, msg=f"{replica} {key}")


def test_the_coordinators_dp_weighs_the_given_profile_only(tiny_npz: str) -> None:
    """With --profile the re-partition's DP gets per-unit costs; measuring this host would take minutes."""
    profile = Path(__file__).parents[1] / "golden_reports" / "profile_vgg5_digits.json"
    for given, costed in ((None, False), (str(profile), True)):
        setup = small_setup("ftpipehd", tiny_npz, profile=given)
        coordinator = Coordinator(setup, "central", make_local_transports(setup.topology.names)["central"])
        assert (UNIT_S in coordinator._costed(True).extra) is costed
        assert coordinator._costed(False) is setup.plan


def test_a_run_resumed_after_a_re_partition_goes_on_with_its_cuts(tiny_npz: str, tmp_path: Path) -> None:
    """The checkpoint holds the re-partitioned stages: every node takes its cuts, then its state."""
    changes = dict(stages=3, micro_batches=2, repartition_every=EVERY, speed_change=("worker1@0=0.1",))
    first = small_setup("ftpipehd", tiny_npz, epochs=1, **changes)
    done = run_in_threads(first, timeout=60, speeds={"worker1": 0.1}, checkpoints=Checkpoints(tmp_path, every=1))
    cuts = cast(list[dict[str, Any]], done.report["epochs"])[-1]["cuts"]
    assert cuts != list(first.plan.cuts)
    whole = small_setup("ftpipehd", tiny_npz, epochs=2, **changes)
    result = run_in_threads(whole, timeout=60, resume=read_checkpoint(latest_checkpoint(tmp_path)))
    rows = cast(list[dict[str, Any]], result.report["epochs"])
    later = [e for e in cast(list[dict[str, Any]], result.report["events"]) if e["epoch"] == 1
             and e["event"] == "repartition"]
    assert len(rows) == 2 and (later[0]["cuts_before"] if later else rows[-1]["cuts"]) == cuts
