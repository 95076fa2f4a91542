"""A real MP-SL run goes on without a dead compute node: the survivors re-solve the cuts, the
layers only it held come from the aggregator's copy of the last aggregation, the epoch is redone.

The cluster runs in threads over gRPC on loopback; compute1's "process" dies when its
transport closes after epoch 0.
"""

from __future__ import annotations

from typing import Any, cast

from .losing import assert_emulated_loss, run_losing
from .test_equality import small_setup


def test_a_dead_compute_node_is_survived(tiny_npz: str) -> None:
    setup = small_setup("mpsl", tiny_npz, epochs=3, compute_nodes=3, cuts=(1, 2, 3, 4))
    result = run_losing(setup, "compute1")
    event, recovery = cast(list[dict[str, Any]], result.report["events"])
    assert recovery == {**event, "event": "recovery"}
    assert (event["event"], event["nodes"], event["epoch"]) == ("failure", ["compute1"], 1)
    assert event["cuts_before"] == [1, 2, 3, 4] and len(event["cuts_after"]) == 3
    rows = cast(list[dict[str, Any]], result.report["epochs"])
    assert [r["cuts"] for r in rows] == [[1, 2, 3, 4]] + [event["cuts_after"]] * 2
    assert rows[-1]["test_accuracy"] >= 0.8
    assert_emulated_loss(setup, "compute1", result)
