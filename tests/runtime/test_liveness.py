"""Liveness polls (runtime/liveness.py): a node that waits for a peer's gradient past its patience polls
the peer; one that answers is slow, not dead, and its late gradient is taken; one that does not answer
(a stalled process) is reported lost, detected by the backward timeout. On in-process and socket transports."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
import torch

from splitpipe.runtime import liveness
from splitpipe.runtime.mailbox import Mailbox, PeerLost, RemoteFailure
from splitpipe.runtime.node import NodeRunner
from splitpipe.runtime.transport import Transport, make_transports
from splitpipe.schedules.ir import RECV, Action, Tag

GRAD = Tag("grad", owner=0, part=1, step=0, mb=0)


@pytest.fixture(params=["local", "socket"])
def pair(request: pytest.FixtureRequest) -> Iterator[dict[str, Transport]]:
    transports = make_transports(request.param, ["a", "b"])
    yield transports
    for transport in transports.values():
        transport.close()


class _Taker:
    """The executor's side of a Recv: keeps what came."""

    def __init__(self) -> None:
        self.received: list[Any] = []

    def receive(self, node: str, action: Action, payload: Any) -> None:
        self.received.append(payload)


def _runner(transport: Transport, taker: _Taker) -> NodeRunner:
    """Node a, whose one lane waits for the gradient from b (as a stage's backward does)."""
    mailbox = Mailbox(transport)
    mailbox.polls.pace.record(0.1)  # a running average batch time of 0.1 s: patience WAIT_FLOOR_S
    schedule = SimpleNamespace(programs={"a": {0: (Action(RECV, peer="b", tag=GRAD),)}})
    return NodeRunner("a", schedule, taker, mailbox, SimpleNamespace(links={}), 0, timeout=600.0)  # type: ignore[arg-type]


def test_a_slow_peer_that_answers_is_waited_for(pair: dict[str, Transport]) -> None:
    """b sends its gradient only once it has answered two polls (so well past 2x the average): not dead."""
    Mailbox(pair["b"])  # answers probes on its transport's receiving thread
    answer, probes, late = pair["b"].on_control, [], threading.Event()
    assert answer is not None

    def counting(src: str, body: dict) -> bool:
        if body.get("type") == "probe":
            probes.append(body)
            if len(probes) == 2:
                late.set()
        return answer(src, body)
    pair["b"].on_control = counting

    def send_late() -> None:
        if late.wait(60):
            pair["b"].send("a", GRAD, torch.ones(3))
    threading.Thread(target=send_late, daemon=True).start()
    taker = _Taker()
    runner = _runner(pair["a"], taker)
    runner.run()
    assert len(taker.received) == 1 and torch.equal(taker.received[0], torch.ones(3))
    assert len(probes) == 2 and "b" in runner.mailbox.polls.rtt  # polled twice, answered each time


def test_a_stalled_peer_is_lost_by_the_backward_timeout(pair: dict[str, Transport],
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """b's process is alive for the kernel but answers nothing (SIGSTOP, a frozen phone): lost, named."""
    monkeypatch.setattr(liveness, "ANSWER_FLOOR_S", 0.5)
    pair["b"].on_control = lambda src, body: body.get("type") == "probe"  # swallowed, never answered
    runner = _runner(pair["a"], _Taker())
    with pytest.raises(PeerLost) as lost:
        runner.run()
    assert lost.value.node == "b" and lost.value.detected == liveness.BACKWARD_TIMEOUT
    assert "no answer to a liveness poll" in str(lost.value) and str(GRAD) in str(lost.value)


def test_a_confirming_poll_tells_a_live_peer_from_a_stalled_one(pair: dict[str, Transport],
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """The coordinator's check of a peer another node reported (coordinator._confirm)."""
    monkeypatch.setattr(liveness, "ANSWER_FLOOR_S", 0.5)
    mailbox = Mailbox(pair["a"])

    def gone(seconds: float) -> bool:
        mailbox.poll(seconds)
        return False
    Mailbox(pair["b"])
    assert mailbox.polls.confirm("b", 30.0, gone) is False
    pair["b"].on_control = lambda src, body: body.get("type") == "probe"
    assert mailbox.polls.confirm("b", 30.0, gone) is True


def test_a_members_report_says_how_it_found_the_peer_lost() -> None:
    """serve() turns a PeerLost into an `error` with `detected`; the coordinator's mailbox keeps it (a value
    it does not know reads as `reported`)."""
    transports = make_transports("local", ["central", "worker1"])
    central = Mailbox(transports["central"], coordinator="central", nodes=["central", "worker1", "worker2"])
    for detected, expected in ((liveness.BACKWARD_TIMEOUT, liveness.BACKWARD_TIMEOUT), ("made up", liveness.REPORTED)):
        transports["worker1"].send_control("central", {"type": "error", "node": "worker2", "message": "lost",
                                                       "detected": detected})
        with pytest.raises(RemoteFailure) as failure:
            central.poll(10)
        assert (failure.value.node, failure.value.reporter, failure.value.detected) == ("worker2", "worker1", expected)
