"""NodeRunner: the emulator's rule among ready lanes, link spans from arrivals, no silent hangs.

Messages are filed into the mailbox with chosen arrival times, so the tests need no sleeps.
"""

from __future__ import annotations

import time

import pytest
import torch

from splitpipe.network import LinkSpec
from splitpipe.plan import Node, Topology
from splitpipe.runtime.mailbox import Mailbox, PhaseTimeout, RemoteFailure
from splitpipe.runtime.node import NodeRunner
from splitpipe.runtime.transport import Message, make_local_transports
from splitpipe.schedules.ir import FORWARD, RECV, SEND, Action, Schedule, Tag

TOPOLOGY = Topology((Node("server", "server"), Node("device0", "device"), Node("device1", "device")),
                    {("device0", "server"): LinkSpec(100.0, 0.5), ("server", "device0"): LinkSpec(100.0, 0.5)})


class RecordingExecutor:
    """Stands in for TensorExecutor: remembers the order of compute actions, sends zeros."""

    def __init__(self) -> None:
        self.order: list[str] = []
        self.received: list[Tag] = []

    def compute(self, node: str, action: Action) -> float:
        self.order.append(action.label)
        return 0.0

    def send(self, node: str, action: Action) -> tuple[object, int]:
        return torch.zeros(2), 8

    def receive(self, node: str, action: Action, payload: object) -> None:
        assert action.tag is not None
        self.received.append(action.tag)


def act(lane: int) -> Tag:
    return Tag("act", lane, 0, 0, 0)


def two_lane_server() -> Schedule:
    """Server lanes 0 and 1 each wait for an activation, then run a forward."""
    lanes = {
        lane: (Action(RECV, peer=f"device{lane}", tag=act(lane)),
               Action(FORWARD, part=1, owner=lane, replica=lane, mb=lane))
        for lane in (0, 1)
    }
    return Schedule(programs={"server": lanes}, replicas=(), evaluate={})


def run_server(arrivals: dict[int, float]) -> list[str]:
    """Compute order when lane i's activation arrives `arrivals[i]` seconds after the runner starts."""
    transports = make_local_transports(TOPOLOGY.names)
    mailbox = Mailbox(transports["server"])
    start = time.time() + 60  # later than the runner's start: lanes become ready at the arrival
    for lane, at in arrivals.items():
        mailbox.file(Message(f"device{lane}", act(lane), torch.zeros(10), None, start + at))
    executor = RecordingExecutor()
    NodeRunner("server", two_lane_server(), executor, mailbox, TOPOLOGY, 0, timeout=5).run()  # type: ignore[arg-type]
    return executor.order


def test_the_input_that_arrived_first_runs_first() -> None:
    assert run_server({0: 2.0, 1: 1.0}) == ["F1.1", "F1.0"]
    assert run_server({0: 1.0, 1: 2.0}) == ["F1.0", "F1.1"]


def test_ties_go_to_lane_order() -> None:
    assert run_server({1: 1.0, 0: 1.0}) == ["F1.0", "F1.1"]


def test_link_spans_end_one_latency_before_the_arrival() -> None:
    transports = make_local_transports(TOPOLOGY.names)
    mailbox = Mailbox(transports["server"])
    mailbox.file(Message("device0", act(0), torch.zeros(10), None, 10.0))  # 40 bytes at 100 B/s
    mailbox.file(Message("device1", act(1), torch.zeros(10), None, 10.0))  # no link spec: unshaped
    runner = NodeRunner("server", two_lane_server(), RecordingExecutor(), mailbox, TOPOLOGY, 3)  # type: ignore[arg-type]
    links = [s for s in runner.run() if s.is_link]
    first, second = sorted(links, key=lambda s: s.resource)
    assert (first.resource, first.category, first.bytes, first.label) == ("device0->server", "upload", 40, "a0.0")
    assert first.start == pytest.approx(9.1) and first.end == pytest.approx(9.5) and first.epoch == 3
    assert (second.resource, second.start, second.end) == ("device1->server", 10.0, 10.0)


def test_a_send_to_itself_skips_the_network() -> None:
    tag = Tag("weights", 0, 0, 0, 0)
    programs = {"server": {0: (Action(SEND, peer="server", tag=tag), Action(RECV, peer="server", tag=tag))}}
    transports = make_local_transports(TOPOLOGY.names)
    executor = RecordingExecutor()
    spans = NodeRunner("server", Schedule(programs, (), {}), executor, Mailbox(transports["server"]),  # type: ignore[arg-type]
                       TOPOLOGY, 0, timeout=5).run()
    assert executor.received == [tag] and spans == []


def test_a_missing_message_times_out_naming_lane_tag_and_peer() -> None:
    transports = make_local_transports(TOPOLOGY.names)
    runner = NodeRunner("server", two_lane_server(), RecordingExecutor(), Mailbox(transports["server"]),  # type: ignore[arg-type]
                        TOPOLOGY, 0, timeout=0.2)
    with pytest.raises(PhaseTimeout, match=r"lane 0 waits for act/0/0/0/0 from device0; lane 1 waits for "
                                           r"act/1/0/0/0 from device1"):
        runner.run()


def test_an_abort_from_the_coordinator_stops_the_wait() -> None:
    transports = make_local_transports(TOPOLOGY.names)
    transports["device0"].send_control("server", {"type": "abort", "node": "device1", "message": "killed"})
    runner = NodeRunner("server", two_lane_server(), RecordingExecutor(), Mailbox(transports["server"]),  # type: ignore[arg-type]
                        TOPOLOGY, 0, timeout=5)
    with pytest.raises(RemoteFailure, match="node device1 failed: killed"):
        runner.run()


def test_a_message_from_the_wrong_peer_is_refused() -> None:
    transports = make_local_transports(TOPOLOGY.names)
    mailbox = Mailbox(transports["server"])
    mailbox.file(Message("device1", act(0), torch.zeros(1), None, 1.0))
    runner = NodeRunner("server", two_lane_server(), RecordingExecutor(), mailbox, TOPOLOGY, 0, timeout=5)  # type: ignore[arg-type]
    with pytest.raises(RuntimeError, match="server expected act/0/0/0/0 from device0, but device1 sent it"):
        runner.run()
