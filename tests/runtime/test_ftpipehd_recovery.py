"""A real FTPipeHD run goes on without a dead worker and ends with the emulator's weights: the
central node gathers the survivors' layers and recovery copies, rebuilds each new stage by
engine/carry.py's rule (runtime/handoff.py) and the epoch is redone. And a worker that says a
live neighbour died is not believed.

The cluster runs in threads over gRPC on loopback; worker2's "process" dies when its transport
closes after epoch 0.
"""

from __future__ import annotations

from typing import Any, cast

from splitpipe.runtime.coordinator import Coordinator
from splitpipe.runtime.mailbox import RemoteFailure
from splitpipe.runtime.transport import make_local_transports
from splitpipe.schedules import build_schedule

from .losing import assert_emulated_loss, run_losing
from .test_equality import small_setup

CHANGES = dict(stages=4, micro_batches=2, epochs=3, replicate_every=3, replicate_central_every=5, repartition_every=0)


def test_a_dead_worker_is_survived_with_the_emulators_weights(tiny_npz: str) -> None:
    setup = small_setup("ftpipehd", tiny_npz, **CHANGES)
    result = run_losing(setup, "worker2")
    failure, recovery = cast(list[dict[str, Any]], result.report["events"])
    assert (failure["event"], failure["nodes"], failure["epoch"], recovery["event"]) == (
        "failure", ["worker2"], 1, "recovery")
    assert failure["cuts_before"] == [1, 2, 3] and len(recovery["cuts_after"]) == 2
    assert sorted({r.node for r in result.states}) == ["central", "worker1", "worker3"]
    assert_emulated_loss(setup, "worker2", result)


def test_a_worker_that_names_a_live_neighbour_is_blamed_itself(tiny_npz: str) -> None:
    setup = small_setup("ftpipehd", tiny_npz, **CHANGES)
    transports = make_local_transports(setup.topology.names)
    coordinator = Coordinator(setup, "central", transports["central"], silence_s=0.2)
    coordinator.schedule = build_schedule(setup.plan, 0)
    lie = RemoteFailure("worker2", "gone", reporter="worker1")
    assert coordinator._blame(setup.plan, lie) == "worker1"  # worker2's stream to central never broke
    coordinator.mailbox.broken.add("worker2")
    assert coordinator._blame(setup.plan, lie) == "worker2"  # central sees it gone too
    assert coordinator._blame(setup.plan, RemoteFailure("worker3", "gone", reporter="worker1")) == "worker1"  # no peer
