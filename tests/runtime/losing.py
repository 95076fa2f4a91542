"""A real cluster in threads over gRPC on loopback that loses one node after epoch 0, and the
emulator's run of the same loss: the recovery tests of every technique compare the two."""

from __future__ import annotations

import threading

import torch

from splitpipe.engine.emulate import TensorExecutor
from splitpipe.engine.emulator import EmulatorEngine
from splitpipe.engine.timing import MeasuredTiming
from splitpipe.loop import Faults, run_loop
from splitpipe.runtime.coordinator import ClusterResult, Coordinator
from splitpipe.runtime.member import run_member
from splitpipe.runtime.protocol import coordinator_of
from splitpipe.runtime.transport import GrpcTransport, Transport
from splitpipe.schedules.ir import Replica
from splitpipe.setup import Setup

from .test_equality import grpc_transports


def die(transport: GrpcTransport) -> None:
    """As if the node's process died: its transport refuses everything, its streams are cut, not ended (no
    goodbye: a peer sees them break, as when a process exits), and its server stops at once. close()
    would be a goodbye, which peers rightly do not take for a death (they would notice only by silence)."""
    with transport._lock:
        transport._closed = True
        senders = list(transport._senders.values())
    for sender in senders:
        sender.abandon()
    assert transport._server is not None
    transport._server.stop(None)


def run_losing(setup: Setup, victim: str) -> ClusterResult:
    """The run with `victim`'s "process" gone (its streams cut) once epoch 0 has ended."""
    lead = coordinator_of(setup.plan)
    transports = grpc_transports(setup)

    def member(name: str, transport: Transport) -> None:
        try:
            run_member(setup, name, transport, lead, transport.address, timeout=30)
        except Exception:  # noqa: BLE001 - the victim dies with its transport
            pass

    def kill(epoch: int, row: dict[str, object]) -> None:
        if epoch == 0:
            victim_transport = transports[victim]
            assert isinstance(victim_transport, GrpcTransport)
            die(victim_transport)

    for name in setup.topology.names:
        if name != lead:
            threading.Thread(target=member, args=(name, transports[name]), daemon=True).start()
    try:
        return Coordinator(setup, lead, transports[lead], address=transports[lead].address,
                           timeout=30, silence_s=10, progress=kill).run()
    finally:
        for transport in transports.values():
            transport.close()


def assert_emulated_loss(setup: Setup, victim: str, result: ClusterResult) -> None:
    """`result` ends with the weights of the emulator's run where `victim` is dead as epoch 1 starts."""
    config = setup.config
    executor = TensorExecutor(setup.model, setup.plan, setup.dataset, setup.shards,
                              MeasuredTiming({n: 1.0 for n in setup.topology.names}), lr=config.lr,
                              momentum=config.momentum, weight_decay=config.weight_decay, seed=config.seed)
    engine = EmulatorEngine(executor, evaluate=False)
    run_loop(setup.plan, engine, range(1))
    run_loop(setup.plan, engine, range(1, config.epochs), faults=Faults(fail={victim: 0.0}))
    expected: dict[Replica, dict[str, torch.Tensor]] = {r: m.state_dict() for r, (m, _) in executor.replicas.items()}
    for replica, state in expected.items():
        for key, value in state.items():
            torch.testing.assert_close(result.states[replica][key], value, rtol=1e-5, atol=1e-6, msg=f"{replica} {key}")
