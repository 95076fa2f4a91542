"""Dial-out devices: the rule that picks them (a launched run with no listening device: test_launch.py)."""

from __future__ import annotations

import pytest

from splitpipe.config import RunConfig
from splitpipe.runtime.dialout import check_dial_out, dials_out
from splitpipe.setup import prepare


def test_data_owners_dial_out_and_the_coordinator_listens(tiny_npz: str) -> None:
    for technique, listening in (("pipelearn", {"server"}), ("mpsl", {"aggregator", "compute0", "compute1"}),
                                 ("ftpipehd", {"central", "worker1", "worker2"})):
        setup = prepare(RunConfig(technique=technique, dataset=f"npz:{tiny_npz}", devices=3, network="none",
                                  epochs=1, batch_size=16, progress=False))
        names = set(setup.topology.names)
        dialling = {n for n in names if dials_out(setup.plan, n)}
        assert names - dialling >= listening, technique
        check_dial_out(setup.plan, dialling)   # no link between two nodes that both dial out
    with pytest.raises(ValueError, match="neither listens; give one of them --listen"):
        check_dial_out(setup.plan, names)
