"""--round-deadline in a real run: an owner whose update is late is left out of that round's FedAvg only."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import torch

from splitpipe.checkpoint import Checkpoints, read_checkpoint
from splitpipe.config import RunConfig
from splitpipe.engine.emulate import TensorExecutor, average_states
from splitpipe.engine.emulator import EmulatorEngine
from splitpipe.engine.timing import MeasuredTiming
from splitpipe.loop import run_loop
from splitpipe.runtime.threads import run_in_threads
from splitpipe.schedules.ir import Replica
from splitpipe.setup import Setup, prepare

#: The round deadline (s) and how long the slow owner stalls in its first compute action: it misses
#: by 3 s or more, the others finish a tiny epoch in well under 3 s even on a loaded host.
DEADLINE_S, STALL_S = 3.0, 6.0


def stalls_once(seconds: float) -> Callable[[], float]:
    """A node speed (read after each compute action) that stalls the first action `seconds`, then runs at full speed."""
    first = threading.Event()

    def speed() -> float:
        if not first.is_set():
            first.set()
            time.sleep(seconds)
        return 1.0
    return speed


def trained_alone(setup: Setup) -> dict[Replica, dict[str, torch.Tensor]]:
    """Every replica after epoch 0 without its aggregation (the emulator, aggregating every 2nd epoch)."""
    plan = prepare(setup.config.with_(aggregation_interval=2, round_deadline=None)).plan
    config = setup.config
    executor = TensorExecutor(setup.model, plan, setup.dataset, setup.shards,
                              MeasuredTiming({n: 1.0 for n in setup.topology.names}),
                              lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay,
                              seed=config.seed)
    run_loop(plan, EmulatorEngine(executor, evaluate=False), range(1))
    return {r: executor.module(r).state_dict() for r in executor.replicas}


def test_a_late_owner_is_left_out_of_that_rounds_fedavg_and_takes_part_in_the_next(tiny_npz: str,
                                                                                     tmp_path: Path) -> None:
    config = RunConfig(technique="pipelearn", dataset=f"npz:{tiny_npz}", devices=3, network="none", epochs=2,
                       batch_size=16, micro_batches=1, progress=False, round_deadline=DEADLINE_S)
    setup = prepare(config)
    result = run_in_threads(setup, timeout=60, speeds={"device2": stalls_once(STALL_S)},
                            checkpoints=Checkpoints(tmp_path, 1, 2))
    report = result.report
    assert [(e["event"], e["epoch"], e["nodes"]) for e in report["events"]] == [  # type: ignore[attr-defined]
        ("deadline_miss", 0, ["device2"])]
    assert [e["participants"] for e in report["epochs"]] == [  # type: ignore[attr-defined]
        ["device0", "device1"], ["device0", "device1", "device2"]]
    # FedAvg of round 0 = owners 0 and 1's updates weighted by their samples; device2 loaded it too
    alone, sizes = trained_alone(setup), setup.plan.shard_sizes
    weights = [sizes[0] / (sizes[0] + sizes[1]), sizes[1] / (sizes[0] + sizes[1])]
    after_round = read_checkpoint(tmp_path / "checkpoints" / "epoch-0000").replicas
    assert {r.replica for r in after_round} == {0, 1, 2}
    for replica, state in after_round.items():
        on_time = [alone[r] for r in sorted(alone, key=lambda r: r.replica) if r.part == replica.part][:2]
        expected = average_states(on_time, weights)
        for key, tensor in expected.items():
            torch.testing.assert_close(state[key], tensor, rtol=1e-5, atol=1e-6, msg=f"{replica} {key}")
