"""validate(): every technique's schedule passes; hand-broken ones are named, all at once, in one line."""

import re
from dataclasses import replace

import pytest

from splitpipe.plan import Plan
from splitpipe.schedules import build_schedule
from splitpipe.schedules.ir import FORWARD, RECV, SEND, Action, Schedule, Tag
from splitpipe.schedules.validate import problems, validate


def edited(schedule: Schedule, node: str, lane: int, program: list[Action]) -> Schedule:
    programs = {n: dict(lanes) for n, lanes in schedule.programs.items()}
    programs[node][lane] = tuple(program)
    return replace(schedule, programs=programs)


def first(schedule: Schedule, op: str) -> tuple[str, int, int, Action]:
    """The first `op` whose lane made its tag just before (a Send right after its writer)."""
    for node, lanes in schedule.programs.items():
        for lane, program in lanes.items():
            for pos, action in enumerate(program):
                if action.op == op and (op != SEND or (pos > 0 and action.tag in program[pos - 1].writes)):
                    return node, lane, pos, action
    raise AssertionError(f"no {op} in the schedule")


def error(schedule: Schedule) -> str:
    with pytest.raises(ValueError) as raised:
        validate(schedule)
    message = str(raised.value)
    assert "\n" not in message and message.startswith("schedule invalid: ")
    return message


def test_every_built_schedule_is_valid(tiny: tuple[str, str, Plan]) -> None:
    schedule = build_schedule(tiny[2], 0)
    assert problems(schedule) == [] and validate(schedule) is schedule


def test_a_dropped_recv_is_named(tiny: tuple[str, str, Plan]) -> None:
    schedule = build_schedule(tiny[2], 0)
    node, lane, pos, recv = first(schedule, RECV)
    program = list(schedule.programs[node][lane])
    del program[pos]
    message = error(edited(schedule, node, lane, program))
    assert f"S {recv.tag} to {node} has no matching recv" in message
    assert re.search(rf"{node} lane {lane} #\d+ \S+ reads {recv.tag}, which its lane never makes", message)


def test_a_duplicate_tag_is_named(tiny: tuple[str, str, Plan]) -> None:
    schedule = build_schedule(tiny[2], 0)
    node, lane, pos, send = first(schedule, SEND)
    program = list(schedule.programs[node][lane])
    program.insert(pos, send)
    message = error(edited(schedule, node, lane, program))
    assert f"duplicate tag {send.tag}: sent to {send.peer} 2 times ({node} lane {lane} #{pos} S {send.tag}, " in message


def test_a_self_wait_is_named(tiny: tuple[str, str, Plan]) -> None:
    """A Send moved before the action that writes its tag waits for its own lane."""
    schedule = build_schedule(tiny[2], 0)
    node, lane, pos, send = first(schedule, SEND)
    program = list(schedule.programs[node][lane])
    program[pos - 1], program[pos] = program[pos], program[pos - 1]
    message = error(edited(schedule, node, lane, program))
    assert message == (f"schedule invalid: 1 problem: {node} lane {lane} #{pos - 1} S {send.tag} "
                       f"reads {send.tag} before its own #{pos} makes it")


def test_a_recv_before_its_own_send_is_a_self_wait() -> None:
    tag = Tag("weights", 0, 0, 0, 0)
    lane = (Action(RECV, peer="server", tag=tag), Action("W", writes=(tag,)), Action(SEND, peer="server", tag=tag))
    message = error(Schedule({"server": {0: lane}}, (), {}))
    assert "server lane 0 #0 R weights/0/0/0/0 waits for its own send #2" in message


def test_every_problem_is_counted_and_the_first_ones_named() -> None:
    act = Tag("act", 0, 0, 0, 0)
    programs = {
        "device0": {0: (Action(FORWARD, reads=(Tag("data", 0, 0, 0, 0),), writes=(act,)),
                        Action(SEND, peer="server", tag=act), Action(SEND, peer="server", tag=act))},
        "server": {0: (Action(RECV, peer="device1", tag=act), Action(FORWARD, part=1, reads=(act,)))},
    }
    found = problems(Schedule(programs, (), {}, {0: "device0"}))
    assert len(found) == 4  # device0's sends unmatched, server's recv unmatched, a duplicate
    message = error(Schedule(programs, (), {}, {0: "device0"}))
    assert message.startswith("schedule invalid: 4 problems: device0 lane 0 #1 S act/0/0/0/0 to server has no "
                              "matching recv; device0 lane 0 #2 S act/0/0/0/0 to server has no matching recv; ")
    assert message.endswith("; ...")


def test_data_is_read_only_where_the_owner_lives() -> None:
    program = (Action(FORWARD, reads=(Tag("data", 1, 0, 0, 0),)),)
    assert "server lane 0 #0 F0.0 reads data/1/0/0/0, but owner 1's data is on device1" in error(
        Schedule({"server": {0: program}}, (), {}, {1: "device1"}))
