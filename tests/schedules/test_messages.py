"""add_messages: a Send right after the writer, a Recv right before the first reader, a relay where no link is."""

import pytest

from splitpipe.schedules.ir import BACKWARD, FORWARD, LOAD, RECV, SEND, SNAPSHOT, Action, Tag
from splitpipe.schedules.messages import add_messages

ACT, LABEL, GRAD = Tag("act"), Tag("label"), Tag("grad", part=1)
DATA = Tag("data")


def short(program: tuple[Action, ...]) -> list[str]:
    return [f"{a.op} {a.tag}" if a.op in (SEND, RECV) else a.op for a in program]


def test_messages_follow_the_writer_and_precede_the_first_reader() -> None:
    programs = {
        "d": {0: (Action(FORWARD, reads=(DATA,), writes=(ACT, LABEL), samples=4), Action(BACKWARD, reads=(GRAD,)))},
        "s": {0: (Action(FORWARD, part=1, reads=(ACT, LABEL)), Action(BACKWARD, part=1, writes=(GRAD,), samples=4))},
    }
    out = add_messages(programs, {("d", "s"), ("s", "d")})
    assert short(out["d"][0]) == ["F", "S act/0/0/0/0", "S label/0/0/0/0", "R grad/0/1/0/0", "B"]
    assert short(out["s"][0]) == ["R act/0/0/0/0", "R label/0/0/0/0", "F", "B", "S grad/0/1/0/0"]
    assert out["d"][0][1] == Action(SEND, peer="s", tag=ACT, samples=4)
    assert programs["d"][0][1].op == BACKWARD  # the input is not changed


def test_lanes_of_one_node_meet_by_a_message_to_themselves() -> None:
    weights = Tag("weights")
    out = add_messages({"s": {0: (Action(SNAPSHOT, writes=(weights,)),), -1: (Action(LOAD, reads=(weights,)),)}}, ())
    assert out["s"][0][1] == Action(SEND, peer="s", tag=weights)
    assert out["s"][-1][0] == Action(RECV, peer="s", tag=weights)


def test_without_a_link_the_relay_lane_forwards_in_writer_order() -> None:
    w0, w1 = Tag("weights", 0), Tag("weights", 1)
    programs = {
        "s": {0: (Action(FORWARD, part=1),)},
        "d0": {0: (Action(SNAPSHOT, writes=(w0,)), Action(LOAD, reads=(w1,)))},
        "d1": {1: (Action(LOAD, reads=(w0,)), Action(SNAPSHOT, writes=(w1,)))},
    }
    star = {("d0", "s"), ("s", "d0"), ("d1", "s"), ("s", "d1")}
    out = add_messages(programs, star, relay=("s", -1))
    assert [(a.op, a.peer, a.tag) for a in out["s"][-1]] == [
        (RECV, "d0", w0), (SEND, "d1", w0), (RECV, "d1", w1), (SEND, "d0", w1)]
    assert out["d1"][1][0] == Action(RECV, peer="s", tag=w0)
    with pytest.raises(ValueError, match="no link d1->d0 for weights/1/0/0/0 and no relay lane given"):
        add_messages(programs, star)
