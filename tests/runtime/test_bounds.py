"""The limits derived from the setup (runtime/bounds.py) hold every message a real run sends, and
are far below the fixed ceiling for a small model."""

from __future__ import annotations

import logging
import sys
import threading
from pathlib import Path

import pytest
import torch

from splitpipe.checkpoint import Checkpoints, latest_checkpoint, read_checkpoint
from splitpipe.runtime.bounds import message_bounds
from splitpipe.runtime.entry import _transport
from splitpipe.runtime.options import NodeOptions
from splitpipe.runtime.threads import run_in_threads
from splitpipe.runtime.transport import SocketTransport
from splitpipe.runtime.transport.base import payload_nbytes
from splitpipe.runtime.transport.limits import MAX_CONTROL_BYTES, MAX_TENSORS
from splitpipe.runtime.transport.local import LocalTransport
from splitpipe.schedules.ir import Tag

from .test_equality import PLANS, small_setup

SECRET = b"bounds-test-secret"


@pytest.fixture
def largest(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """The most bytes and tensors of any data message sent by an in-process transport while the test runs."""
    seen = {"bytes": 0, "tensors": 0}
    send = LocalTransport.send

    def recording(self: LocalTransport, peer: str, tag, payload) -> None:  # type: ignore[no-untyped-def]
        seen["bytes"] = max(seen["bytes"], payload_nbytes(payload))
        seen["tensors"] = max(seen["tensors"], 1 if isinstance(payload, torch.Tensor) else len(payload))
        send(self, peer, tag, payload)

    monkeypatch.setattr(LocalTransport, "send", recording)
    return seen


@pytest.mark.parametrize("technique", list(PLANS))
def test_every_message_of_a_checkpointed_run_fits_the_bound(technique: str, tiny_npz: str, tmp_path: Path,
                                                            largest: dict[str, int]) -> None:
    setup = small_setup(technique, tiny_npz, epochs=1, micro_batches=1)
    run_in_threads(setup, timeout=60, checkpoints=Checkpoints(tmp_path, every=1, keep=1))  # weights + momentum gathered
    bounds = message_bounds(setup)
    assert 0 < largest["bytes"] <= max(bounds.boundary_bytes, bounds.state_bytes) < bounds.max_message_bytes
    assert 0 < largest["tensors"] <= bounds.state_tensors < bounds.max_tensors
    assert bounds.max_message_bytes < (1 << 30) // 100 and bounds.max_tensors < MAX_TENSORS


def test_a_resumed_run_loads_within_the_bound(tiny_npz: str, tmp_path: Path, largest: dict[str, int]) -> None:
    run_in_threads(small_setup("fl", tiny_npz, epochs=1), timeout=60, checkpoints=Checkpoints(tmp_path))
    resumed = small_setup("fl", tiny_npz, epochs=2)
    run_in_threads(resumed, timeout=60, resume=read_checkpoint(latest_checkpoint(tmp_path)))
    bounds = message_bounds(resumed)
    assert 0 < largest["bytes"] <= bounds.state_bytes and largest["tensors"] <= bounds.state_tensors


def test_the_bound_grows_with_the_batch_and_stays_under_the_ceiling(tiny_npz: str) -> None:
    small, large = (message_bounds(small_setup("sl", tiny_npz, batch_size=b)) for b in (8, 64))
    assert large.boundary_bytes == 8 * small.boundary_bytes
    capped = message_bounds(small_setup("sl", tiny_npz), ceiling_bytes=1000, ceiling_tensors=3)
    assert (capped.max_message_bytes, capped.max_tensors) == (1000, 3)


def test_a_node_drops_a_message_over_its_derived_bound_and_its_peer_goes_on(tiny_npz: str,
                                                                              caplog: pytest.LogCaptureFixture) -> None:
    bounds = message_bounds(small_setup("sl", tiny_npz))
    caplog.set_level(logging.WARNING, "splitpipe.transport")
    rx = SocketTransport("rx", "127.0.0.1:0", {}, SECRET, connect_timeout=10.0, **bounds.transport_limits())
    tx = SocketTransport("tx", "127.0.0.1:0", {}, SECRET, connect_timeout=10.0)   # a peer with the fixed limits
    with rx, tx:
        rx.start()
        tx.start()
        tx.add_peer("rx", rx.address)
        rx.add_peer("tx", tx.address)
        tx.send("rx", Tag("act", mb=1), torch.zeros(bounds.max_message_bytes // 4 + 1))
        tx.send("rx", Tag("weights", mb=2), {str(i): torch.zeros(1) for i in range(bounds.max_tensors + 1)})
        tx.send_control("rx", {"type": "alive", "pad": "x" * (2 * bounds.max_message_bytes)})  # control: fixed limit
        tx.send("rx", Tag("act", mb=3), torch.ones(3))
        got = [rx.receive(10.0), rx.receive(10.0)]   # a control message may overtake data: either order
        control = [m.control for m in got if m is not None and m.control is not None]
        data = [m.tag for m in got if m is not None and m.control is None]
        assert len(control[0]["pad"]) > bounds.max_message_bytes and data == [Tag("act", mb=3)]
        drops = [r.message for r in caplog.records if "malformed message from node 'tx'" in r.message]
        assert any(f"exceed the limit of {bounds.max_message_bytes} bytes" in m for m in drops)
        assert any(f"exceed the limit of {bounds.max_tensors} per message" in m for m in drops)


def test_a_node_started_from_its_options_gets_the_derived_limits(tiny_npz: str, tmp_path: Path,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    setup = small_setup("sl", tiny_npz)
    secret = tmp_path / "secret"
    secret.write_bytes(SECRET)
    options = NodeOptions(role="server", listen="127.0.0.1:0", secret_file=str(secret), config=setup.config)
    with caplog.at_level(logging.INFO, "splitpipe.runtime"):
        transport = _transport(options, options.listen, "server", setup, None, None)
    bounds = message_bounds(setup)
    assert (transport._max_message_bytes, transport._max_tensors) == (bounds.max_message_bytes, bounds.max_tensors)
    assert transport._max_control_bytes == MAX_CONTROL_BYTES
    assert f"drops data messages over {bounds.max_message_bytes} bytes or {bounds.max_tensors} tensors" in caplog.text


def test_nodes_of_one_process_derive_their_bounds_at_once_and_the_shared_model_keeps_its_state(tiny_npz: str) -> None:
    """entry.run_handover runs the nodes of a launched process in threads sharing one setup: their
    transports' bounds, derived at once, leave the model (and so every replica made from it) as it was.
    Deriving them flipped the shared model's training flags and, 1 round in 5, moved its BatchNorm
    statistics: the real run's test accuracy then differed from the emulator's."""
    setup = small_setup("pipelearn", tiny_npz)
    model = setup.model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    switch = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # the threads interleave inside the calls
    try:
        for _ in range(20):
            start = threading.Barrier(2)

            def node(start: threading.Barrier = start) -> None:
                start.wait()
                message_bounds(setup)

            threads = [threading.Thread(target=node) for _ in range(2)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
    finally:
        sys.setswitchinterval(switch)
    assert all(m.training for m in model.modules())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
