"""The lane model: the ready rule both engines follow, and the spans it leaves."""

from splitpipe.engine.lanes import (
    Lane,
    compute_span,
    earliest_compute,
    make_lanes,
    next_transfer,
    transfer_span,
)
from splitpipe.schedules.ir import BACKWARD, FORWARD, RECV, SEND, STEP, Action, Tag

F = Action(FORWARD, part=0, mb=1)
B = Action(BACKWARD, part=1, owner=2, step=3, mb=4)
U = Action(STEP, part=0)
S = Action(SEND, peer="b", tag=Tag("act"))
R = Action(RECV, peer="b", tag=Tag("grad"))


def nothing_arrived(lane: Lane) -> float | None:
    return None


def test_make_lanes_numbers_every_nodes_lanes_in_order() -> None:
    lanes = make_lanes({"a": {0: (F,), -1: (U,)}, "b": {3: (S, R)}}, ready=2.5)
    assert [(ln.node, ln.lane, ln.order, ln.pc, ln.ready) for ln in lanes] == [
        ("a", 0, 0, 0, 2.5), ("a", -1, 1, 0, 2.5), ("b", 3, 2, 0, 2.5)]
    lanes[2].advance(4.0)
    assert (lanes[2].action, lanes[2].ready) == (R, 4.0)
    lanes[2].advance(5.0)
    assert lanes[2].action is None


def test_a_send_runs_when_its_lane_is_ready_earliest_first_then_by_lane_order() -> None:
    lanes = make_lanes({"a": {0: (S,), 1: (S,), 2: (S,)}})
    lanes[0].ready, lanes[1].ready, lanes[2].ready = 3.0, 1.0, 1.0
    assert next_transfer(lanes, nothing_arrived) == (1.0, lanes[1])


def test_a_recv_waits_for_its_message_and_is_ready_when_both_are() -> None:
    lanes = make_lanes({"a": {0: (R,), 1: (R,)}})
    lanes[0].ready, lanes[1].ready = 5.0, 0.0
    assert next_transfer(lanes, nothing_arrived) is None
    arrivals = {0: 1.0, 1: 7.0}
    assert next_transfer(lanes, lambda ln: arrivals[ln.lane]) == (5.0, lanes[0])   # max(5, 1) < max(0, 7)
    assert next_transfer(lanes, lambda ln: None if ln.lane == 0 else 7.0) == (7.0, lanes[1])


def test_transfers_ignore_compute_and_compute_ignores_transfers() -> None:
    lanes = make_lanes({"a": {0: (F,), 1: (S,), 2: ()}})
    assert next_transfer(lanes, nothing_arrived) == (0.0, lanes[1])
    assert earliest_compute(lanes) is lanes[0]
    assert earliest_compute(lanes[1:]) is None


def test_the_compute_of_the_lane_ready_first_runs_ties_by_lane_order() -> None:
    lanes = make_lanes({"a": {0: (F,), 1: (B,), 2: (U,)}})
    lanes[0].ready, lanes[1].ready, lanes[2].ready = 2.0, 1.0, 1.0
    assert earliest_compute(lanes) is lanes[1]
    lanes[1].advance(9.0)
    assert earliest_compute(lanes) is lanes[2]


def test_spans_name_the_resource_category_and_action() -> None:
    span = compute_span("server", B, 1.0, 2.5, epoch=7)
    assert (span.resource, span.category, span.start, span.end, span.epoch) == ("server", "backward", 1.0, 2.5, 7)
    assert (span.owner, span.part, span.step, span.micro_batch, span.bytes, span.label) == (2, 1, 3, 4, 0, "B1.4")
    link = transfer_span("device0", "server", Tag("act", 1, 0, 2, 3), 0.5, 1.5, 1, 64, "a0.3")
    assert (link.resource, link.category, link.bytes, link.label) == ("device0->server", "upload", 64, "a0.3")
    assert (link.owner, link.part, link.step, link.micro_batch) == (1, 0, 2, 3)
    assert transfer_span("server", "device0", Tag("grad"), 0, 1, 0, 8, "g0.0").category == "download"


def test_a_replica_shared_by_lanes_is_held_from_forward_to_step() -> None:
    """Rule (3): lane 1 became ready first, but lane 0 holds the shared replica until its step."""
    f, b, u = (Action(op, part=1, replica=0) for op in (FORWARD, BACKWARD, STEP))
    lanes = make_lanes({"s": {0: (f, b, u), 1: (f, b, u)}})
    lanes[0].advance(1.0)  # lane 0 ran its forward: it holds (part 1, replica 0)
    lanes[1].ready = 0.5
    assert earliest_compute(lanes) is lanes[0]
    lanes[0].advance(2.0)
    lanes[0].advance(3.0)  # its step releases the replica
    assert earliest_compute(lanes) is lanes[1]


def test_own_replicas_are_never_held_against_another_lane() -> None:
    lanes = make_lanes({"s": {0: (Action(FORWARD, part=1, replica=0), U), 1: (Action(FORWARD, part=1, replica=1),)}})
    lanes[0].advance(1.0)
    lanes[1].ready = 0.5
    assert earliest_compute(lanes) is lanes[1]
