"""Builders: golden text of every technique, round-trips, structure."""

import os
from pathlib import Path

import pytest

from splitpipe.network import PROFILES
from splitpipe.plan import Plan, star_topology
from splitpipe.schedules import build_schedule
from splitpipe.schedules.ir import FORWARD, RECV, SEND, Action, Tag, parse_action

GOLDEN = Path(__file__).parent / "golden"


def plan(technique: str, devices: int = 1, shard: int = 3, micro_batches: int = 2, cuts=(1,)) -> Plan:
    topology = star_topology(devices, [PROFILES["wifi"]], [0.1], 1.0)
    return Plan(technique, topology, num_units=2, cuts=cuts if technique != "fl" else (), batch_size=3,
                micro_batches=micro_batches, shard_sizes=(shard,) * devices,
                owners=tuple(f"device{i}" for i in range(devices)))


def test_schedule_matches_golden_text(tiny: tuple[str, str, Plan]) -> None:
    """Every technique; regenerate after an intended change:
    SPLITPIPE_REGENERATE=1 pytest tests/schedules/test_builders.py -k golden"""
    _, name, made = tiny
    text = build_schedule(made, 0).dump()
    golden = GOLDEN / name
    if os.environ.get("SPLITPIPE_REGENERATE"):
        golden.write_text(text)
    assert text == golden.read_text(), f"regenerate {golden} if the change is intended"


def test_action_text_round_trips(tiny: tuple[str, str, Plan]) -> None:
    schedule = build_schedule(tiny[2], 0)
    for _, _, action in schedule.actions():
        assert parse_action(str(action)) == action


def test_bad_action_text_is_named() -> None:
    with pytest.raises(ValueError, match="colour=red"):
        parse_action("F part=1 colour=red")
    with pytest.raises(ValueError, match="bad tag 'act/1'"):
        Tag.parse("act/1")


def test_pipelearn_uploads_each_micro_batch_before_the_next_forward() -> None:
    program = build_schedule(plan("pipelearn", shard=3, micro_batches=3), 0).programs["device0"][0]
    ops = [(a.op, a.tag.kind if a.tag else None) for a in program[:6]]
    assert program[0].reads == (Tag("data", 0, 0, 0, 0),)
    assert program[0].writes == (Tag("act", 0, 0, 0, 0), Tag("label", 0, 0, 0, 0))
    assert ops == [(FORWARD, None), (SEND, "act"), (SEND, "label")] * 2
    assert sum(a.op == FORWARD for a in program) == 3


def test_sfl_is_pipelearn_with_one_micro_batch() -> None:
    sfl = build_schedule(plan("sfl", micro_batches=3), 0)
    one = build_schedule(plan("pipelearn", micro_batches=1), 0)
    assert sfl.dump() == one.dump()


def test_every_send_has_a_matching_receive() -> None:
    for technique in ("fl", "sl", "sfl", "pipelearn"):
        schedule = build_schedule(plan(technique, devices=3, shard=7), 0)
        sends = {(a.peer, a.tag) for node, _, a in schedule.actions() if a.op == SEND}
        recvs = {(node, a.tag) for node, _, a in schedule.actions() if a.op == RECV}
        assert sends == recvs, technique


def test_two_part_techniques_reject_other_cuts() -> None:
    with pytest.raises(ValueError, match=r"2 parts .* got cuts \(1, 2\)"):
        build_schedule(plan("pipelearn", cuts=(1, 2)), 0)


def test_action_rejects_unknown_op() -> None:
    with pytest.raises(ValueError, match="unknown action op 'X'"):
        Action("X")
