"""The event engine: hand-computed critical path, FIFO links, deadlock detection."""

import math

import numpy as np
import pytest
from torch import nn

from splitpipe.data import load_dataset
from splitpipe.engine.emulate import TensorExecutor
from splitpipe.engine.events import ScheduleStuck, run_schedule
from splitpipe.engine.timing import ProfileTiming, part_units
from splitpipe.network import TCP, Framing, LinkSpec, parse_network
from splitpipe.plan import Node, Plan, Topology
from splitpipe.profile import Profile, UnitCost
from splitpipe.schedules import build_schedule
from splitpipe.schedules.ir import RECV, SEND, Action, Replica, Schedule, Tag


def two_node_plan() -> Plan:
    topology = Topology(
        (Node("server", "server"), Node("device0", "device")),
        {("device0", "server"): LinkSpec(64.0, 0.5), ("server", "device0"): LinkSpec(128.0, 0.5)},
    )
    return Plan("pipelearn", topology, num_units=2, cuts=(1,), batch_size=4, micro_batches=2,
                shard_sizes=(4,), owners=("device0",), aggregation_interval=2)


def hand_profile() -> Profile:
    units = (UnitCost({2: 1.0}, {2: 2.0}, 0.5, 32, 0), UnitCost({2: 0.3}, {2: 0.6}, 0.1, 40, 0))
    return Profile("tiny", "cpu", 256, units, copy_s_per_byte=0.0)


def test_profile_timing_equals_hand_computed_critical_path() -> None:
    plan = two_node_plan()
    model = nn.Sequential(nn.Sequential(nn.Flatten(), nn.Linear(64, 8)), nn.Linear(8, 10))
    timing = ProfileTiming({n: hand_profile() for n in ("server", "device0")},
                           {"server": 1.0, "device0": 1.0}, part_units(2, plan.cuts))
    executor = TensorExecutor(model, plan, load_dataset("digits"), [np.arange(4)], timing)
    schedule = build_schedule(plan, 0)
    executor.begin_epoch(0, schedule)
    spans = run_schedule(schedule, plan.topology, executor)
    # device: F0.0 [0,1], F0.1 [1,2]; uplink 64 B/s: act0 [1,2] (+0.5 -> 2.5), label0 [2,2.25] (2.75),
    # act1 [2.25,3.25] (3.75), label1 [3.25,3.5] (4.0); server: F1.0 [2.75,3.05] B1.0 [3.05,3.65],
    # grad0 down [3.65,4.15] (4.65); F1.1 [4.0,4.3] B1.1 [4.3,4.9] grad1 [4.9,5.4] (5.9), U1 [4.9,5.0];
    # device: B0.0 [4.65,6.65] B0.1 [6.65,8.65] U0 [8.65,9.15]
    assert max(s.end for s in spans) == pytest.approx(9.15)
    device = [(s.label, s.start, s.end) for s in spans if s.resource == "device0"]
    assert device[2] == ("B0.0", pytest.approx(4.65), pytest.approx(6.65))
    uplink = [(s.start, s.end, s.bytes) for s in spans if s.resource == "device0->server"]
    assert uplink == [(1.0, 2.0, 64), (2.0, 2.25, 16), (2.25, 3.25, 64), (3.25, 3.5, 16)]
    executor.end_epoch()


class CountingExecutor:
    """No tensors: compute takes one second, every message is 10 bytes."""

    def compute(self, node: str, action: Action) -> float:
        return 1.0

    def send(self, node: str, action: Action) -> tuple[object, int]:
        return None, 10

    def receive(self, node: str, action: Action, payload: object) -> None:
        pass


def test_link_is_fifo_and_latency_does_not_occupy_it() -> None:
    topology = Topology((Node("a", "device"), Node("b", "server")), {("a", "b"): LinkSpec(10.0, 5.0)})
    tags = [Tag("act", 0, 0, 0, m) for m in range(3)]
    sender = tuple(Action(SEND, peer="b", tag=t) for t in tags)
    receiver = tuple(Action(RECV, peer="a", tag=t) for t in tags)
    schedule = Schedule({"a": {0: sender}, "b": {0: receiver}}, (), {})
    spans = run_schedule(schedule, topology, CountingExecutor())
    assert [(s.start, s.end) for s in spans] == [(0.0, 1.0), (1.0, 2.0), (2.0, 3.0)]


def _fan(topology: Topology, src: str, peers: tuple[str, ...], into: bool = False) -> list[tuple[float, float]]:
    """Link spans of one 10-byte message from `src` to each peer (or from each peer to `src`)."""
    programs: dict[str, dict[int, tuple[Action, ...]]] = {src: {}}
    for i, peer in enumerate(peers):
        tag = Tag("act", i, 0, 0, 0)
        out, back = (peer, src) if into else (src, peer)
        programs.setdefault(out, {})[i] = (Action(SEND, peer=back, tag=tag),)
        programs.setdefault(back, {})[i] = (Action(RECV, peer=out, tag=tag),)
    spans = run_schedule(Schedule(programs, (), {}), topology, CountingExecutor())
    return sorted((s.start, s.end) for s in spans)


def test_an_owners_radio_serialises_its_transfers_to_different_peers() -> None:
    nodes = (Node("o", "device"), Node("c0", "compute"), Node("c1", "compute"))
    links = {ends: LinkSpec(10.0, 0.0) for p in ("c0", "c1") for ends in (("o", p), (p, "o"))}
    shared = Topology(nodes, links, frozenset({"o"}))
    assert _fan(shared, "o", ("c0", "c1")) == [(0.0, 1.0), (1.0, 2.0)]              # sum, not max
    assert _fan(shared, "o", ("c0", "c1"), into=True) == [(0.0, 1.0), (1.0, 2.0)]   # its downlink too
    assert _fan(Topology(nodes, links), "o", ("c0", "c1")) == [(0.0, 1.0), (0.0, 1.0)]


def test_tcp_framing_adds_headers_and_the_acks_hold_the_reverse_link() -> None:
    # 1448 payload bytes are 1514 on the wire; their ACKs (66 bytes per 2 segments) are 33 back.
    tcp = LinkSpec(1514.0, 0.0, TCP)
    assert tcp.transfer_s(1448) == pytest.approx(1.0)
    assert LinkSpec(33.0, 0.0, TCP).ack_s(1448) == pytest.approx(1.0)
    assert tcp.goodput_Bps == pytest.approx(1448.0)
    assert parse_network("10/25/0").up == LinkSpec(10e6 / 8, 0.0, TCP)   # profiles give line rates
    assert parse_network("none").up.transfer_s(10**9) == 0.0 and LinkSpec(10.0, 0.0).transfer_s(5) == 0.5
    topology = Topology((Node("a", "device"), Node("b", "server")),
                        {("a", "b"): LinkSpec(1514.0, 0.5, TCP), ("b", "a"): LinkSpec(33.0, 0.0, TCP)})

    up, down = Tag("act", 0, 0, 0, 0), Tag("grad", 0, 0, 0, 0)
    schedule = Schedule({"a": {0: (Action(SEND, peer="b", tag=up),), 1: (Action(RECV, peer="b", tag=down),)},
                         "b": {0: (Action(RECV, peer="a", tag=up), Action(SEND, peer="a", tag=down))}}, (), {})
    spans = {s.resource: (s.start, s.end) for s in run_schedule(schedule, topology, Sized({"a": 1448, "b": 1448}))}
    # a -> b [0, 1], in at 1.5; its ACKs hold b -> a [1.5, 2.5]; b's reply waits for them
    assert spans["a->b"] == (0.0, pytest.approx(1.0))
    assert spans["b->a"][0] == pytest.approx(2.5)


def test_deadlock_is_reported_with_the_blocked_lanes() -> None:
    topology = Topology((Node("a", "device"), Node("b", "server")), {})
    waits = (Action(RECV, peer="b", tag=Tag("grad", 0, 1, 0, 0)),)
    schedule = Schedule({"a": {0: waits}, "b": {0: ()}}, (), {})
    with pytest.raises(ScheduleStuck, match=r"(?s)not progressing.*a lane 0: waits at #0 R"):
        run_schedule(schedule, topology, CountingExecutor())


def test_node_runs_the_input_that_arrived_first() -> None:
    """Two lanes on one node: the one whose message arrives first computes first."""
    topology = Topology(
        (Node("s", "server"), Node("d0", "device"), Node("d1", "device")),
        {("d0", "s"): LinkSpec(1.0, 0.0), ("d1", "s"): LinkSpec(100.0, 0.0)},
    )
    lanes = {}
    for lane in (0, 1):
        tag = Tag("act", lane, 0, 0, 0)
        lanes[lane] = (Action(RECV, peer=f"d{lane}", tag=tag), Action("F", part=1, owner=lane))
    devices = {f"d{i}": {i: (Action(SEND, peer="s", tag=Tag("act", i, 0, 0, 0)),)} for i in (0, 1)}
    schedule = Schedule({"s": lanes, **devices}, (Replica("s", 1, 0),), {})
    spans = run_schedule(schedule, topology, CountingExecutor())
    server = [s for s in spans if s.resource == "s"]
    assert [s.owner for s in server] == [1, 0]
    assert math.isclose(server[0].start, 0.1)


#: 1 byte/s, every byte its own segment, each acknowledged by a 1-byte ACK per 2 segments.
ACKING = LinkSpec(1.0, 0.0, Framing(mss=1, header=0, ack=1, per_ack=2))


class Sized(CountingExecutor):
    """Messages of a fixed size per sending node."""

    def __init__(self, sizes: dict[str, int]) -> None:
        super().__init__()
        self.sizes = sizes

    def send(self, node: str, action: Action) -> tuple[object, int]:
        return None, self.sizes[node]


def test_acks_made_during_an_upload_go_between_its_segments_and_delay_its_arrival() -> None:
    # a -> b: 4 bytes [0, 4]; b -> a: 2 bytes [0, 2], whose ACKs (1 s) are made at 2 while the
    # upload is on the wire: it ends at 5, and b receives it then
    topology = Topology((Node("a", "device"), Node("b", "server")), {("a", "b"): ACKING, ("b", "a"): ACKING})
    up, down = Tag("act", 0, 0, 0, 0), Tag("grad", 0, 0, 0, 0)
    schedule = Schedule({"a": {0: (Action(SEND, peer="b", tag=up),), 1: (Action(RECV, peer="b", tag=down),)},
                         "b": {0: (Action(SEND, peer="a", tag=down),), 1: (Action(RECV, peer="a", tag=up),)}},
                        (), {})
    spans = {s.resource: (s.start, s.end) for s in run_schedule(schedule, topology, Sized({"a": 4, "b": 2}))}
    assert spans["a->b"] == (0.0, pytest.approx(5.0))
    assert spans["b->a"] == (0.0, pytest.approx(2.0))   # a's ACKs of the upload come after, at 5


def test_a_replica_freed_by_a_lane_ending_at_a_recv_computes_from_then_and_no_received_upload_is_pushed() -> None:
    # s lane 0 trains part 1 ([0, 1]) and ends with a Recv of d's 8-byte upload ([0, 8], in at 8): the part is
    # held until then (rule 3), so lane 1's Forward on it runs [8, 9], not [1, 2], and lane 1's 2-byte reply
    # goes after the upload's ACKs ([8, 12]): [12, 14]. Run at 1, the reply's ACKs (made at 4) would push the
    # upload to 9 after s had received it at 8.
    topology = Topology((Node("d", "device"), Node("s", "server")), {("d", "s"): ACKING, ("s", "d"): ACKING})
    up, down = Tag("act", 0, 0, 0, 0), Tag("grad", 0, 0, 0, 1)
    schedule = Schedule({"d": {0: (Action(SEND, peer="s", tag=up), Action(RECV, peer="s", tag=down))},
                         "s": {0: (Action("F", part=1), Action(RECV, peer="d", tag=up)),
                               1: (Action("F", part=1), Action(SEND, peer="d", tag=down))}},
                        (Replica("s", 1, 0),), {})
    spans = run_schedule(schedule, topology, Sized({"d": 8, "s": 2}))
    assert [(s.start, s.end) for s in spans if s.resource == "s"] == [(0.0, 1.0), (8.0, 9.0)]
    links = {s.resource: (s.start, s.end) for s in spans if "->" in s.resource}
    assert links == {"d->s": (0.0, 8.0), "s->d": (12.0, 14.0)}
