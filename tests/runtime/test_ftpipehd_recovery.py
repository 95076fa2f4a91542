"""A real FTPipeHD run goes on without a dead worker and ends with the emulator's weights: the
central node gathers the survivors' layers and recovery copies, rebuilds each new stage by
engine/carry.py's rule (runtime/handoff.py) and the epoch is redone. And a worker that says a
live neighbour died is not believed.

The cluster runs in threads over gRPC on loopback; worker2's "process" dies when its transport
closes after epoch 0.
"""

from __future__ import annotations

import threading
from typing import Any, cast

import torch

from splitpipe.engine.emulate import TensorExecutor
from splitpipe.engine.emulator import EmulatorEngine
from splitpipe.engine.timing import MeasuredTiming
from splitpipe.loop import Faults, run_loop
from splitpipe.runtime.coordinator import Coordinator
from splitpipe.runtime.mailbox import RemoteFailure
from splitpipe.runtime.member import run_member
from splitpipe.runtime.transport import Transport, make_local_transports
from splitpipe.schedules import build_schedule
from splitpipe.schedules.ir import Replica
from splitpipe.setup import Setup

from .test_equality import grpc_transports, small_setup

CHANGES = dict(stages=4, micro_batches=2, epochs=3, replicate_every=3, replicate_central_every=5, repartition_every=0)


def test_a_dead_worker_is_survived_with_the_emulators_weights(tiny_npz: str) -> None:
    setup = small_setup("ftpipehd", tiny_npz, **CHANGES)
    transports = grpc_transports(setup)

    def member(name: str, transport: Transport) -> None:
        try:
            run_member(setup, name, transport, "central", transport.address, timeout=30)
        except Exception:  # noqa: BLE001 - worker2 dies with its transport
            pass

    def kill(epoch: int, row: dict[str, object]) -> None:
        if epoch == 0:
            transports["worker2"].close()

    for name in setup.topology.names:
        if name != "central":
            threading.Thread(target=member, args=(name, transports[name]), daemon=True).start()
    try:
        result = Coordinator(setup, "central", transports["central"], address=transports["central"].address,
                             timeout=30, silence_s=10, progress=kill).run()
    finally:
        for transport in transports.values():
            transport.close()
    failure, recovery = cast(list[dict[str, Any]], result.report["events"])
    assert (failure["event"], failure["nodes"], failure["epoch"], recovery["event"]) == (
        "failure", ["worker2"], 1, "recovery")
    assert failure["cuts_before"] == [1, 2, 3] and len(recovery["cuts_after"]) == 2
    assert sorted({r.node for r in result.states}) == ["central", "worker1", "worker3"]
    for replica, state in emulated(setup).items():  # the emulator, worker2 dead as epoch 1 starts
        for key, value in state.items():
            torch.testing.assert_close(result.states[replica][key], value, rtol=1e-5, atol=1e-6, msg=f"{replica} {key}")


def emulated(setup: Setup) -> dict[Replica, dict[str, torch.Tensor]]:
    config = setup.config
    executor = TensorExecutor(setup.model, setup.plan, setup.dataset, setup.shards,
                              MeasuredTiming({n: 1.0 for n in setup.topology.names}), lr=config.lr,
                              momentum=config.momentum, weight_decay=config.weight_decay, seed=config.seed)
    engine = EmulatorEngine(executor, evaluate=False)
    run_loop(setup.plan, engine, range(1))
    run_loop(setup.plan, engine, range(1, config.epochs), faults=Faults(fail={"worker2": 0.0}))
    return {r: m.state_dict() for r, (m, _) in executor.replicas.items()}


def test_a_worker_that_names_a_live_neighbour_is_blamed_itself(tiny_npz: str) -> None:
    setup = small_setup("ftpipehd", tiny_npz, **CHANGES)
    transports = make_local_transports(setup.topology.names)
    coordinator = Coordinator(setup, "central", transports["central"], silence_s=0.2)
    coordinator.schedule = build_schedule(setup.plan, 0)
    lie = RemoteFailure("worker2", "gone", reporter="worker1")
    assert coordinator._blame(setup.plan, lie) == "worker1"  # worker2's stream to central never broke
    coordinator.mailbox.broken.add("worker2")
    assert coordinator._blame(setup.plan, lie) == "worker2"  # central sees it gone too
    assert coordinator._blame(setup.plan, RemoteFailure("worker3", "gone", reporter="worker1")) == "worker1"  # no peer
