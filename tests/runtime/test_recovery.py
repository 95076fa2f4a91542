"""Calling an epoch off: a broken stream names the dead node, fences drop the aborted attempt's data."""

from __future__ import annotations

import time

import pytest
import torch

from splitpipe.config import RunConfig
from splitpipe.runtime.mailbox import EpochAborted, Mailbox, PhaseTimeout, RemoteFailure
from splitpipe.runtime.recovery import peers_of, replanned
from splitpipe.runtime.transport import Message, make_local_transports
from splitpipe.schedules.ir import RECV, SEND, Action, Schedule, Tag
from splitpipe.setup import prepare


def data(src: str, step: int) -> Message:
    return Message(src, Tag("act", 0, 0, step, 0), torch.zeros(1), None, time.time())


def control(src: str, body: dict) -> Message:
    return Message(src, None, None, body, time.time())


def mailbox() -> Mailbox:
    return Mailbox(make_local_transports(["server", "device0", "device1"])["server"])


def test_a_broken_stream_of_a_watched_node_fails_it_at_once() -> None:
    box = mailbox()
    box.file(control("device1", {"type": "broken"}))  # not watched yet: nothing to say
    box.watch("device0")
    with pytest.raises(RemoteFailure, match="node device0 failed: its stream broke"):
        box.file(control("device0", {"type": "broken"}))


def test_a_fence_drops_what_its_sender_sent_before_it() -> None:
    box = mailbox()
    box.file(data("device0", 1))
    box.file(data("device1", 2))
    box.file(control("device0", {"type": "fence"}))
    assert [m.src for m in box.data.values()] == ["device1"] and box.fenced == {"device0"}
    box.await_fences({"device0"}, timeout=0.1)
    assert box.fenced == set()


def test_a_forgotten_node_is_ignored_and_so_are_reports_about_it() -> None:
    box = mailbox()
    box.watch("device0")
    box.file(data("device0", 1))
    box.forget("device0")
    assert not box.data
    box.file(data("device0", 2))
    box.file(control("device1", {"type": "error", "node": "device0", "message": "unreachable"}))
    box.file(control("device0", {"type": "broken"}))
    assert not box.data and not box.controls


def test_rewind_calls_the_epoch_off_naming_the_dead() -> None:
    with pytest.raises(EpochAborted) as aborted:
        mailbox().file(control("server", {"type": "rewind", "epoch": 3, "dead": ["device2"]}))
    assert (aborted.value.epoch, aborted.value.dead) == (3, ["device2"])


def test_peers_of_a_node_are_whom_it_sends_to_and_receives_from() -> None:
    tag = Tag("act", 0, 0, 0, 0)
    programs = {"server": {0: (Action(RECV, peer="device0", tag=tag), Action(SEND, peer="device1", tag=tag))}}
    assert peers_of(Schedule(programs=programs, replicas=(), evaluate={}), "server") == ({"device1"}, {"device0"})
    assert peers_of(None, "server") == (set(), set())


def test_every_node_makes_the_same_replan_from_the_dead_list(tiny_npz: str) -> None:
    config = RunConfig(technique="pipelearn", dataset=f"npz:{tiny_npz}", devices=4, network="none", epochs=1)
    plan = prepare(config).plan
    after_one, moved = replanned(plan, plan, ["device2"])
    assert after_one.owners == ("device0", "device1", "device3") and moved == {0: 0, 1: 1, 3: 2}
    after_two, moved = replanned(plan, after_one, ["device2", "device0"])
    assert after_two.owners == ("device1", "device3") and moved == {1: 0, 2: 1}


def test_a_sender_whose_stream_broke_counts_as_fenced_until_it_streams_again() -> None:
    box = mailbox()  # device1 died while the others rewind: its fence never comes
    box.file(control("device1", {"type": "broken"}))
    box.await_fences({"device1"}, timeout=0.1)
    box.file(data("device1", 1))  # it streams again (restarted): a fence is awaited once more
    with pytest.raises(PhaseTimeout, match="fences of device1"):
        box.await_fences({"device1"}, timeout=0.1)


def test_silence_counts_from_a_nodes_first_word_when_asked() -> None:
    box = Mailbox(make_local_transports(["server", "device0"])["device0"], silence_s=1.0)
    box.watch("server", from_first_word=True)  # the coordinator heartbeats only once it read our hello
    box._check_silence(time.time() + 100)
    box.file(control("server", {"type": "alive"}))
    box._check_silence(time.time())
    with pytest.raises(RemoteFailure, match=r"node server failed: nothing heard from it for \d+ s"):
        box._check_silence(time.time() + 100)
