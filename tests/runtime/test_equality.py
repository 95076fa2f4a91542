"""The distributed runtime trains exactly what the emulator trains: same weights, loss and accuracy.

Each node runs in a thread with its own transport (in-process queues, or gRPC over loopback),
so only the messages connect them, as between processes.
"""

from __future__ import annotations

import re
import threading
import time
from typing import Any, cast

import pytest
import torch

from splitpipe.config import RunConfig
from splitpipe.engine.emulate import TensorExecutor
from splitpipe.engine.emulator import EmulatorEngine
from splitpipe.engine.timing import MeasuredTiming
from splitpipe.experiment import Setup, emulate, prepare
from splitpipe.loop import run_loop
from splitpipe.runtime.bounds import message_bounds
from splitpipe.runtime.coordinator import ClusterResult, Coordinator
from splitpipe.runtime.member import run_member
from splitpipe.runtime.protocol import config_body, coordinator_of
from splitpipe.runtime.threads import run_in_threads
from splitpipe.runtime.transport import GrpcTransport, Transport, make_local_transports
from splitpipe.schedules.ir import Replica

#: technique -> config changes for a small plan of that technique.
PLANS = {
    "sfl": {},
    "pipelearn": {},
    "fl": {},
    "sl": {},
    "mpsl": {"compute_nodes": 2},
    "ftpipehd": {"stages": 3, "repartition_every": 0},  # re-partitions: test_ftpipehd_segments.py
}


def small_setup(technique: str, dataset: str, **changes: object) -> Setup:
    config = RunConfig(technique=technique, dataset=f"npz:{dataset}", devices=2, network="none", epochs=2,
                       batch_size=16, micro_batches=4, progress=False, **PLANS[technique])  # type: ignore[arg-type]
    return prepare(config.with_(**changes))


def emulated_states(setup: Setup) -> dict[Replica, dict[str, torch.Tensor]]:
    """Every replica's weights after the emulator's epochs (the run loop, as experiment.emulate drives it)."""
    plan, config = setup.plan, setup.config
    executor = TensorExecutor(setup.model, plan, setup.dataset, setup.shards,
                              MeasuredTiming({n: 1.0 for n in setup.topology.names}),
                              lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay,
                              seed=config.seed)
    run_loop(plan, EmulatorEngine(executor, evaluate=False), range(config.epochs))
    return {r: executor.module(r).state_dict() for r in executor.replicas}


def assert_same_training(setup: Setup, result: ClusterResult) -> None:
    expected = emulated_states(setup)
    assert sorted(result.states, key=repr) == sorted(expected, key=repr)
    for replica, state in expected.items():
        got = result.states[replica]
        assert got.keys() == state.keys()
        for key, tensor in state.items():
            torch.testing.assert_close(got[key], tensor, rtol=1e-5, atol=1e-6, msg=f"{replica} {key}")
    emulated, distributed = epochs(emulate(setup).report), epochs(result.report)
    assert [r["test_accuracy"] for r in distributed] == [r["test_accuracy"] for r in emulated]
    assert [r["train_loss"] for r in distributed] == pytest.approx([r["train_loss"] for r in emulated], rel=1e-5)


def epochs(report: dict[str, object]) -> list[dict[str, Any]]:
    return cast(list[dict[str, Any]], report["epochs"])


@pytest.mark.parametrize("technique", list(PLANS))
def test_same_weights_as_the_emulator_in_process(technique: str, tiny_npz: str) -> None:
    setup = small_setup(technique, tiny_npz)
    result = run_in_threads(setup, timeout=60)
    assert result.report["engine"] == "distributed"
    assert_same_training(setup, result)


def test_ftpipehd_async_same_weights_as_the_emulator_in_process(tiny_npz: str) -> None:
    """PipeDream's 1F1B with weight stashing (`--pipeline async`) runs for real as emulated."""
    setup = small_setup("ftpipehd", tiny_npz, pipeline="async")
    assert_same_training(setup, run_in_threads(setup, timeout=60))


def grpc_transports(setup: Setup) -> dict[str, Transport]:
    """One started gRPC transport per node on loopback, shaped by the plan's links, with the run's derived limits."""
    coordinator = coordinator_of(setup.plan)
    links, limits = setup.topology.links, message_bounds(setup).transport_limits()
    made: dict[str, Transport] = {}
    for name in [coordinator, *(n for n in setup.topology.names if n != coordinator)]:
        peers = {} if name == coordinator else {coordinator: made[coordinator].address}  # type: ignore[attr-defined]
        transport = GrpcTransport(name, "127.0.0.1:0", peers, b"equality-test-secret",
                                  links=links, radios=setup.topology.radios, **limits)
        transport.start()
        made[name] = transport
    return made


def test_pipelearn_over_grpc_matches_the_emulator_on_a_shaped_network(tiny_npz: str) -> None:
    setup = small_setup("pipelearn", tiny_npz, network="500/500/1")
    transports = grpc_transports(setup)
    try:
        result = run_in_threads(setup, transports, timeout=60)
    finally:
        for transport in transports.values():
            transport.close()
    assert_same_training(setup, result)
    epoch = epochs(result.report)[0]
    assert epoch["bytes"]["device0->server"] > 0 and epoch["time_s"] > 0
    assert set(cast(dict[str, object], result.report["nodes"])) == set(setup.topology.names)


def test_a_node_with_another_config_is_dropped_naming_it_and_the_key(tiny_npz: str,
                                                                     caplog: pytest.LogCaptureFixture) -> None:
    """device1's hello carries another learning rate: it is told why and dropped; device0 trains on."""
    setup = small_setup("sfl", tiny_npz, epochs=1)
    transports = make_local_transports(setup.topology.names)
    device1 = transports["device1"]
    device1.send_control("server", {"type": "hello", "name": "device1", "role": "device", "address": "",
                                    "config": config_body(setup.config.with_(lr=0.5))})
    member = threading.Thread(target=run_member, args=(setup, "device0", transports["device0"], "server"),
                              kwargs={"timeout": 30}, daemon=True)
    member.start()
    with caplog.at_level("WARNING", "splitpipe.runtime"):
        result = Coordinator(setup, "server", transports["server"], timeout=30).run()
    member.join(30)
    assert re.search(r"node device1 failed: has a different config: lr: 0.01 != 0.5; "
                     r"the run goes on without device1", caplog.text)
    told = device1.receive(10.0)
    assert told is not None and told.control == {"type": "abort", "node": "device1",
                                                 "message": "has a different config: lr: 0.01 != 0.5"}
    assert {r.node for r in result.states} == {"server", "device0"}


def test_a_run_that_cannot_lose_the_nodes_with_another_config_fails(tiny_npz: str,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    setup = small_setup("sfl", tiny_npz)
    other = config_body(setup.config.with_(lr=0.5))
    monkeypatch.setattr("splitpipe.runtime.member.config_body", lambda config: other)  # every device's hello
    with pytest.raises(RuntimeError, match=r"no data owner left after dropping device0, device1"):
        run_in_threads(setup, timeout=20)


def test_a_node_that_falls_silent_is_dropped_naming_it(tiny_npz: str, caplog: pytest.LogCaptureFixture) -> None:
    """device1 joins and falls silent while clocks are read: it is dropped after `silence_s`, not at
    the phase timeout, and the run goes on without it (before the first epoch as during one)."""
    setup = small_setup("sfl", tiny_npz)
    transports = make_local_transports(setup.topology.names)
    device1 = transports["device1"]  # joins, then its process "dies": no heartbeat, no work
    device1.send_control("server", {"type": "hello", "name": "device1", "role": "device", "address": "",
                                    "config": config_body(setup.config)})
    done = threading.Event()

    def device0() -> None:
        run_member(setup, "device0", transports["device0"], "server", timeout=30, silence_s=30)
        done.set()

    def chatter() -> None:  # a busy inbox: the coordinator is never idle while it waits
        while not done.is_set():
            transports["device0"].send_control("server", {"type": "alive"})
            time.sleep(0.02)

    threading.Thread(target=device0, daemon=True).start()
    threading.Thread(target=chatter, daemon=True).start()
    with caplog.at_level("WARNING", "splitpipe.runtime"):
        result = Coordinator(setup, "server", transports["server"], timeout=30, silence_s=1.5).run()
    assert done.wait(10)
    assert re.search(r"node device1 failed: nothing heard from it for \d+ s .*the run goes on without device1",
                     caplog.text)
    events = cast(list[dict[str, Any]], result.report["events"])
    assert [(e["event"], e["nodes"], e["epoch"]) for e in events] == [("failure", ["device1"], 0), ("dropout", ["device1"], 0)]
