"""Real runs keep checkpoints and resume from them: every node's replicas, weights and SGD momentum.

In-process clusters (a thread per node) for every technique; one `splitpipe launch` killed
between epochs and resumed in test_launch.py.
"""

from __future__ import annotations

import contextlib
import threading
from pathlib import Path
from typing import Any, cast

import pytest
import torch

from splitpipe.checkpoint import Checkpoints, latest_checkpoint, read_checkpoint
from splitpipe.runtime import launcher
from splitpipe.runtime.coordinator import ClusterResult, Coordinator
from splitpipe.runtime.member import run_member
from splitpipe.runtime.threads import run_in_threads
from splitpipe.runtime.transport import Transport, make_transports
from splitpipe.setup import Setup

from .test_equality import assert_same_training, small_setup


@pytest.mark.parametrize("technique", ["fl", "mpsl"])  # all six pass; two keep the suite short
def test_a_resumed_real_run_trains_what_an_uninterrupted_one_does(technique: str, tiny_npz: str,
                                                                  tmp_path: Path) -> None:
    first = small_setup(technique, tiny_npz, epochs=2)
    run_in_threads(first, timeout=60, checkpoints=Checkpoints(tmp_path, every=1, keep=2))
    checkpoint = read_checkpoint(latest_checkpoint(tmp_path))
    assert checkpoint.epoch == 1 and checkpoint.replicas.keys() == checkpoint.momentum.keys() != set()
    assert any(m for m in checkpoint.momentum.values())  # SGD's buffers, gathered from every node
    whole = small_setup(technique, tiny_npz, epochs=3)
    result = run_in_threads(whole, timeout=60, resume=checkpoint)
    assert [row["epoch"] for row in result.report["epochs"]] == [0, 1, 2]  # type: ignore[index]
    assert_same_training(whole, result)


def test_a_checkpoint_of_another_run_is_refused_in_one_line(tiny_npz: str, tmp_path: Path) -> None:
    run_in_threads(small_setup("sfl", tiny_npz, epochs=1), timeout=60, checkpoints=Checkpoints(tmp_path))
    checkpoint = read_checkpoint(latest_checkpoint(tmp_path))
    with pytest.raises(ValueError, match=r"state.json is of another run: technique 'sfl', this run's 'fl'"):
        run_in_threads(small_setup("fl", tiny_npz, epochs=3), timeout=60, resume=checkpoint)


def test_a_run_resumed_from_a_checkpoint_written_after_a_death_goes_on_without_the_dead(tiny_npz: str,
                                                                                        tmp_path: Path) -> None:
    """device2 dies in epoch 1; the checkpoint after epoch 1 holds the plan without it. Resumed from
    there with device2 not started (as launch --resume does), the run trains what the first one did."""
    setup = small_setup("pipelearn", tiny_npz, devices=3, epochs=3)

    def die_after_epoch_0(epoch: int, row: dict[str, object]) -> None:
        if epoch == 0:
            first["device2"].close()  # its process dies

    first = transports(setup)
    whole = cluster(setup, first, progress=die_after_epoch_0, checkpoints=Checkpoints(tmp_path, every=1, keep=3))
    events = cast(list[dict[str, Any]], whole.report["events"])
    assert [(e["event"], e["nodes"], e["epoch"]) for e in events] == [("failure", ["device2"], 1), ("dropout", ["device2"], 1)]
    checkpoint = read_checkpoint(tmp_path / "checkpoints" / "epoch-0001")
    assert checkpoint.state["dead"] == ["device2"]
    assert launcher._dead_at(str(tmp_path)) == ["device2"]  # launch --resume does not start it
    again = transports(setup)
    again.pop("device2").close()  # not started again
    resumed = cluster(setup, again, resume=checkpoint)
    rows = cast(list[dict[str, Any]], resumed.report["epochs"])
    assert [r["participants"] for r in rows] == [["device0", "device1", "device2"]] + [["device0", "device1"]] * 2
    *earlier, resume = cast(list[dict[str, Any]], resumed.report["events"])
    assert earlier == events and (resume["event"], resume["epoch"], resume["nodes"]) == ("resume", 2, ["device2"])
    assert resumed.states.keys() == whole.states.keys()
    for replica, state in whole.states.items():
        for key, tensor in state.items():
            torch.testing.assert_close(resumed.states[replica][key], tensor, rtol=1e-5, atol=1e-6,
                                       msg=f"{replica} {key}")


def transports(setup: Setup) -> dict[str, Transport]:
    return make_transports("socket", setup.topology.names, setup.topology.links, radios=setup.topology.radios)


def cluster(setup: Setup, transports: dict[str, Transport], **options: Any) -> ClusterResult:
    """The coordinator here, every other node of `transports` in a thread (a dead one's error ignored)."""
    def member(name: str) -> None:
        with contextlib.suppress(Exception):
            run_member(setup, name, transports[name], "server", transports[name].address, timeout=30)

    for name in transports:
        if name != "server":
            threading.Thread(target=member, args=(name,), daemon=True).start()
    try:
        return Coordinator(setup, "server", transports["server"], address=transports["server"].address,
                           timeout=30, silence_s=10, **options).run()
    finally:
        for transport in transports.values():
            transport.close()
