"""A real MP-SL run goes on without a dead compute node: the survivors re-solve the cuts, the
layers only it held come from the aggregator's copy of the last aggregation, the epoch is redone.

The cluster runs in threads over gRPC on loopback; compute1's "process" dies when its
transport closes after epoch 0.
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
from splitpipe.runtime.member import run_member
from splitpipe.runtime.transport import Transport
from splitpipe.schedules.ir import Replica
from splitpipe.setup import Setup

from .test_equality import grpc_transports, small_setup


def test_a_dead_compute_node_is_survived(tiny_npz: str) -> None:
    setup = small_setup("mpsl", tiny_npz, epochs=3, compute_nodes=3, cuts=(1, 2, 3, 4))
    transports = grpc_transports(setup)

    def member(name: str, transport: Transport) -> None:
        try:
            run_member(setup, name, transport, "aggregator", transport.address, timeout=30)
        except Exception:  # noqa: BLE001 - compute1 dies with its transport
            pass

    def kill(epoch: int, row: dict[str, object]) -> None:
        if epoch == 0:
            transports["compute1"].close()

    for name in setup.topology.names:
        if name != "aggregator":
            threading.Thread(target=member, args=(name, transports[name]), daemon=True).start()
    try:
        result = Coordinator(setup, "aggregator", transports["aggregator"], address=transports["aggregator"].address,
                             timeout=30, silence_s=10, progress=kill).run()
    finally:
        for transport in transports.values():
            transport.close()
    event, recovery = cast(list[dict[str, Any]], result.report["events"])
    assert recovery == {**event, "event": "recovery"}
    assert (event["event"], event["nodes"], event["epoch"]) == ("failure", ["compute1"], 1)
    assert event["cuts_before"] == [1, 2, 3, 4] and len(event["cuts_after"]) == 3
    rows = cast(list[dict[str, Any]], result.report["epochs"])
    assert [r["cuts"] for r in rows] == [[1, 2, 3, 4]] + [event["cuts_after"]] * 2
    assert rows[-1]["test_accuracy"] >= 0.8
    for replica, state in emulated(setup).items():  # the emulator, compute1 dead as epoch 1 starts
        for key, value in state.items():
            torch.testing.assert_close(result.states[replica][key], value, rtol=1e-5, atol=1e-6, msg=f"{replica} {key}")


def emulated(setup: Setup) -> dict[Replica, dict[str, torch.Tensor]]:
    config = setup.config
    executor = TensorExecutor(setup.model, setup.plan, setup.dataset, setup.shards,
                              MeasuredTiming({n: 1.0 for n in setup.topology.names}), lr=config.lr,
                              momentum=config.momentum, weight_decay=config.weight_decay, seed=config.seed)
    engine = EmulatorEngine(executor, evaluate=False)
    run_loop(setup.plan, engine, range(1))
    run_loop(setup.plan, engine, range(1, config.epochs), faults=Faults(fail={"compute1": 0.0}))
    return {r: m.state_dict() for r, (m, _) in executor.replicas.items()}
