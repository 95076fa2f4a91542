"""Real runs keep checkpoints and resume from them: every node's replicas, weights and SGD momentum.

In-process clusters (a thread per node) for every technique; one `splitpipe launch` killed
between epochs and resumed in test_launch.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from splitpipe.checkpoint import Checkpoints, latest_checkpoint, read_checkpoint
from splitpipe.runtime.threads import run_in_threads

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
