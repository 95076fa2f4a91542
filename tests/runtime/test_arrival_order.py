"""A real run's weights do not depend on the order in which the owners' updates reach the aggregator.

Each owner's snapshot is held back until every other owner has sent its own, once with the
first owner last and once with the last owner last: both runs end with the emulator's weights
bit for bit, since averages sum in the schedule's order of owners, not in arrival order.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping

import pytest
import torch

from splitpipe.experiment import emulate
from splitpipe.runtime.coordinator import _averaged
from splitpipe.runtime.threads import run_in_threads
from splitpipe.runtime.transport import Transport, make_transports
from splitpipe.schedules.ir import Replica, Tag
from splitpipe.setup import Setup

from .test_equality import emulated_states, epochs, small_setup

#: Seconds the held-back owner waits for the others' snapshots before it sends anyway (a deadline:
#: the weights must agree whatever the order, so a late gate costs the test nothing but its point).
GATE_S = 30.0


def last_to_send(setup: Setup, late: str) -> dict[str, Transport]:
    """In-process transports where node `late` sends its snapshots (`weights`) only once every other
    device has sent its own: its update reaches the aggregator last."""
    transports = make_transports("local", setup.topology.names, setup.topology.links)
    others = {n for n in setup.topology.names if n.startswith("device") and n != late}
    sent: set[str] = set()
    done = threading.Condition()
    for name, transport in transports.items():
        send = transport.send

        def ordered(peer: str, tag: Tag, payload: object, name: str = name, send=send) -> None:  # noqa: ANN001
            if tag.kind == "weights" and name == late:
                with done:
                    done.wait_for(lambda: others <= sent, GATE_S)
            send(peer, tag, payload)
            if tag.kind == "weights":
                with done:
                    sent.add(name)
                    done.notify_all()

        transport.send = ordered  # type: ignore[method-assign]
    return transports


def same(a: Mapping[str, torch.Tensor], b: Mapping[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("technique", ["fl", "pipelearn"])
def test_the_owners_arrival_order_leaves_the_weights_bit_for_bit_the_emulators(technique: str, tiny_npz: str) -> None:
    setup = small_setup(technique, tiny_npz, devices=3, epochs=1, micro_batches=2)
    expected, emulated = emulated_states(setup), emulate(setup)
    for late in ("device0", "device2"):
        transports = last_to_send(setup, late)
        try:
            result = run_in_threads(setup, transports, timeout=60)
        finally:
            for transport in transports.values():
                transport.close()
        assert sorted(result.states, key=repr) == sorted(expected, key=repr)
        assert all(same(result.states[r], state) for r, state in expected.items()), f"{late} last"
        assert result.model is not None and same(result.model.state_dict(), emulated.model.state_dict())
        assert [e["test_accuracy"] for e in epochs(result.report)] == [e["test_accuracy"] for e in epochs(emulated.report)]


def test_a_rejoining_node_gets_the_same_average_whatever_order_the_reports_came_in() -> None:
    """The coordinator averages every copy of a key for a rejoining node; its copies are the nodes'
    reports, filed as they came: summed by replica index, every order gives the same bits."""
    torch.manual_seed(0)
    copies = {Replica(f"device{i}", 0, i): {"0.weight": torch.randn(1000)} for i in range(3)}
    orders = [dict(sorted(copies.items(), key=lambda item, o=o: o.index(item[0].replica))) for o in ([0, 1, 2], [2, 0, 1])]
    sums = [sum(c["0.weight"] / 3 for c in order.values()) for order in orders]
    assert not torch.equal(*sums)  # the plain sums differ with their order: the test can tell
    keys = {"0.weight": torch.zeros(1000)}
    first, second = (_averaged(keys, order)["0.weight"] for order in orders)
    assert torch.equal(first, second)
