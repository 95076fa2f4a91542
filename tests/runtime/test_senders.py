"""Data messages are taken only from the node the plan has send them (runtime/senders.py), at arrival."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from typing import Any, cast

import torch

from splitpipe.config import RunConfig
from splitpipe.runtime.coordinator import Coordinator
from splitpipe.runtime.mailbox import Mailbox
from splitpipe.runtime.member import run_member
from splitpipe.runtime.protocol import gather_tag, load_tags
from splitpipe.runtime.transport import Message, Transport, make_local_transports
from splitpipe.schedules import build_schedule
from splitpipe.schedules.ir import RECV, Replica, Schedule, Tag
from splitpipe.setup import Setup, prepare

from .passthrough import Passthrough


def data(src: str, tag: Tag) -> Message:
    return Message(src, tag, torch.zeros(2), None, time.time())


def pipelearn(tiny_npz: str, epochs: int = 1) -> Setup:
    return prepare(RunConfig(technique="pipelearn", dataset=f"npz:{tiny_npz}", devices=2, network="none",
                             epochs=epochs, batch_size=16, micro_batches=4, progress=False))


def received(schedule: Schedule, node: str, peer: str) -> Tag:
    """The first tag `node` receives from `peer` in `schedule`."""
    return next(a.tag for actions in schedule.programs[node].values() for a in actions
                if a.op == RECV and a.peer == peer and a.tag is not None)


def test_data_from_a_node_the_plan_does_not_pair_is_refused_at_arrival(tiny_npz: str, caplog) -> None:
    setup = pipelearn(tiny_npz)
    schedule = build_schedule(setup.plan, 0)
    box = Mailbox(make_local_transports(setup.topology.names)["device0"], coordinator="server")
    box.expect(schedule)
    tag = received(schedule, "device0", "server")
    with caplog.at_level(logging.WARNING, "splitpipe.runtime"):
        for _ in range(20):  # a flood: five lines and a count, not twenty lines
            box.file(data("device1", tag))
        box.file(data("device1", load_tags(Replica("device0", 0, 0), 0)[0]))  # state only from the coordinator
    assert not box.data
    refusals = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert refusals[0] == f"device0 refused {tag} from device1: the plan has server send it"
    assert len(refusals) == 5
    box.file(data("server", tag))  # the real one is not taken for a second copy
    assert box.data[tag].src == "server"


def test_the_coordinator_takes_each_replicas_state_from_its_node_only(tiny_npz: str) -> None:
    setup = pipelearn(tiny_npz)
    schedule = build_schedule(setup.plan, 0)
    box = Mailbox(make_local_transports(setup.topology.names)["server"], coordinator="server")
    box.expect(schedule)
    replica = next(r for r in schedule.replicas if r.node == "device0")
    box.file(data("device1", gather_tag(replica, 0)))
    assert not box.data
    box.file(data("device0", gather_tag(replica, 0)))
    assert list(box.data) == [gather_tag(replica, 0)]


class Meddler(Passthrough):
    """device1's transport: as it says it is ready for epoch 1, it sends device0 a gradient only the server sends."""

    def __init__(self, inner: Transport, tag: Tag) -> None:
        super().__init__(inner)
        self.tag = tag

    def send_control(self, peer: str, body: dict) -> None:
        if body.get("type") == "ready" and body.get("epoch") == 1:
            self.inner.send("device0", self.tag, torch.zeros(16, 8))
        self.inner.send_control(peer, body)


def test_a_devices_data_to_a_node_it_is_not_paired_with_does_not_disturb_the_run(tiny_npz: str, caplog) -> None:
    setup = pipelearn(tiny_npz, epochs=2)
    tag = received(build_schedule(setup.plan, 1), "device0", "server")
    transports = make_local_transports(setup.topology.names)
    nodes = {"device0": transports["device0"], "device1": Meddler(transports["device1"], tag)}
    for name, transport in nodes.items():
        def member(name: str = name, transport: Transport = transport) -> None:
            with contextlib.suppress(Exception):
                run_member(setup, name, transport, "server", timeout=60)
        threading.Thread(target=member, daemon=True).start()
    try:
        with caplog.at_level(logging.WARNING, "splitpipe.runtime"):
            result = Coordinator(setup, "server", transports["server"], timeout=60).run()
    finally:
        for transport in transports.values():
            transport.close()
    assert "events" not in result.report
    epochs = cast(list[dict[str, Any]], result.report["epochs"])
    assert [e["participants"] for e in epochs] == [["device0", "device1"]] * 2
    assert f"device0 refused {tag} from device1: the plan has server send it" in caplog.text


def test_a_nodes_recovery_copies_are_taken_from_the_node_of_that_number_whatever_it_holds(tiny_npz: str) -> None:
    """After a re-plan worker3 holds part 2, yet its copies are numbered 3 (its index in the run)."""
    from splitpipe.runtime.protocol import backups_tag
    from splitpipe.runtime.senders import Senders

    setup = prepare(RunConfig(technique="ftpipehd", dataset=f"npz:{tiny_npz}", stages=4, network="none",
                              epochs=1, batch_size=16, progress=False))
    senders = Senders("central", "central", setup.topology.names)
    plan, _ = setup.technique.replan(setup.plan, ["worker2"])  # type: ignore[misc]
    senders.expect(build_schedule(plan, 0))
    assert senders.refusal("worker3", backups_tag(setup.topology.names.index("worker3"), 0)) is None
    assert senders.refusal("worker1", backups_tag(setup.topology.names.index("worker3"), 0)) is not None
