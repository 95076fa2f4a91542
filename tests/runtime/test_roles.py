"""Control messages by role: orders come from the coordinator only, reports go to it only, and a data
owner's `error` costs the run that owner at most, whatever node it names."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from typing import Any, cast

import pytest

from splitpipe.config import RunConfig
from splitpipe.runtime.coordinator import ClusterResult, Coordinator
from splitpipe.runtime.mailbox import Mailbox
from splitpipe.runtime.member import run_member
from splitpipe.runtime.transport import Message, Transport, make_local_transports
from splitpipe.setup import prepare

from .passthrough import Passthrough


def control(src: str, body: dict) -> Message:
    return Message(src, None, None, body, time.time())


def test_a_device_cannot_order_another_about(caplog) -> None:
    box = Mailbox(make_local_transports(["server", "device0", "device1"])["device0"], coordinator="server")
    with caplog.at_level(logging.WARNING, "splitpipe.runtime"):
        for body in ({"type": "abort", "node": "server", "message": "forged"},
                     {"type": "rewind", "epoch": 0, "dead": ["device0"]},
                     {"type": "error", "node": "server", "message": "forged"},
                     {"type": "stop"}):
            box.file(control("device1", body))
    assert not box.controls
    assert "device0 ignored 'abort' from device1: only server sends it" in caplog.text
    assert "device0 ignored 'error' from device1: only server receives it" in caplog.text
    box.file(control("server", {"type": "stop"}))
    assert [m.control for m in box.controls] == [{"type": "stop"}]


def test_the_coordinator_takes_no_orders() -> None:
    box = Mailbox(make_local_transports(["server", "device0"])["server"], coordinator="server")
    box.file(control("device0", {"type": "abort", "node": "server", "message": "forged"}))
    box.file(control("device0", {"type": "ready", "epoch": 0}))
    assert [m.control["type"] for m in box.controls] == ["ready"]  # type: ignore[index]


def test_a_name_outside_the_plan_is_not_heard(caplog) -> None:
    """The shared secret lets a connection claim any name; one that is no node of the run says nothing."""
    box = Mailbox(make_local_transports(["server", "device0"])["server"], coordinator="server",
                  nodes=["server", "device0"])
    with caplog.at_level(logging.WARNING, "splitpipe.runtime"):
        box.file(control("mallory", {"type": "error", "node": "server", "message": "forged"}))
    assert not box.controls
    assert "server ignored a message from mallory, which is not a node of this run" in caplog.text


class Forger(Passthrough):
    """device1's transport: as it sends the control message `when` picks (by default, that it is ready for
    epoch 1), it first tells the server that the server failed."""

    def __init__(self, inner: Transport, when: Callable[[dict], bool] | None = None, after: bool = False) -> None:
        super().__init__(inner)
        self.after = after
        self.when = when or (lambda body: body.get("type") == "ready" and body.get("epoch") == 1)

    def send_control(self, peer: str, body: dict) -> None:
        if self.after:
            self.inner.send_control(peer, body)
        if self.when(body):
            self.inner.send_control("server", {"type": "error", "node": "server", "message": "forged: disk on fire"})
        if not self.after:
            self.inner.send_control(peer, body)


def run_with_forger(tiny_npz: str, when: Callable[[dict], bool] | None = None, epochs: int = 3,
                    after: bool = False) -> ClusterResult:
    """A pipelearn run in threads whose device1 forges an error before (or `after`) the control message
    `when` picks; the server's result."""
    setup = prepare(RunConfig(technique="pipelearn", dataset=f"npz:{tiny_npz}", devices=2, network="none",
                              epochs=epochs, batch_size=16, micro_batches=4, progress=False))
    transports = make_local_transports(setup.topology.names)
    nodes = {"device0": transports["device0"], "device1": Forger(transports["device1"], when, after)}
    for name, transport in nodes.items():
        def member(name: str = name, transport: Transport = transport) -> None:
            with contextlib.suppress(Exception):  # device1, left out, gives up once the server falls silent to it
                run_member(setup, name, transport, "server", timeout=60)
        threading.Thread(target=member, daemon=True).start()
    try:
        return Coordinator(setup, "server", transports["server"], timeout=60).run()
    finally:
        for transport in transports.values():
            transport.close()


def test_a_devices_forged_error_does_not_abort_the_run(tiny_npz: str) -> None:
    result = run_with_forger(tiny_npz)
    events = cast(list[dict[str, Any]], result.report["events"])
    assert [(e["event"], e["nodes"], e["epoch"]) for e in events] == [("failure", ["device1"], 1), ("dropout", ["device1"], 1)]
    epochs = cast(list[dict[str, Any]], result.report["epochs"])
    assert [e["participants"] for e in epochs] == [["device0", "device1"], ["device0"], ["device0"]]


@pytest.mark.parametrize(("when", "after", "events"), [
    ("hello", True, [("failure", ["device1"], 0), ("dropout", ["device1"], 0)]),  # it joined, then failed: out for good
    ("pong", False, [("failure", ["device1"], 0), ("dropout", ["device1"], 0)]),  # its clock was being read
    ("hello", False, [("failure", ["device1"], 0), ("dropout", ["device1"], 0), ("rejoin", ["device1"], 1)]),  # its hello came after: a restart
])
def test_a_devices_error_before_the_first_epoch_drops_it(tiny_npz: str, when: str, after: bool,
                                                         events: list[tuple[str, list[str], int]], caplog) -> None:
    """While the nodes join or while clocks are read, device1 says the server failed: the run goes on
    without device1 from the first epoch (and a hello after the error is a restarted node's, back at
    the next epoch boundary)."""
    with caplog.at_level(logging.WARNING, "splitpipe.runtime"):
        result = run_with_forger(tiny_npz, lambda body: body.get("type") == when and body.get("seq", 2) == 2,
                                 epochs=2, after=after)
    logged = cast(list[dict[str, Any]], result.report["events"])
    assert [(e["event"], e["nodes"], e["epoch"]) for e in logged] == events
    epochs = cast(list[dict[str, Any]], result.report["epochs"])
    assert epochs[0]["participants"] == ["device0"]
    assert "the run goes on without device1" in caplog.text
