"""Tests of per-epoch batches and their split into micro-batches."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from splitpipe.data import batches, split_micro_batches


def test_batches_keep_every_sample() -> None:
    indices = np.arange(100, 203)
    result = batches(indices, 10, epoch=0, seed=0)
    assert [len(b) for b in result] == [10] * 10 + [3]
    assert np.array_equal(np.sort(np.concatenate(result)), indices)


def test_batches_are_seeded_by_seed_and_epoch() -> None:
    indices = np.arange(50)
    first = np.concatenate(batches(indices, 8, epoch=1, seed=4))
    assert np.array_equal(first, np.concatenate(batches(indices, 8, epoch=1, seed=4)))
    assert not np.array_equal(first, np.concatenate(batches(indices, 8, epoch=2, seed=4)))
    assert not np.array_equal(first, np.concatenate(batches(indices, 8, epoch=1, seed=5)))
    assert not np.array_equal(first, indices)  # shuffled


def test_batches_of_nothing_and_bad_sizes() -> None:
    assert batches(np.arange(0), 4, 0, 0) == []
    with pytest.raises(ValueError, match=r"batch_size must be an integer >= 1 \(got 0\); epoch"):
        batches(np.arange(5), 0, -1, 0)


@pytest.mark.parametrize("batch_len", [1, 3, 7, 10, 64])
@pytest.mark.parametrize("micro_batches", [1, 2, 4, 8])
def test_split_micro_batches_matches_tensor_split(batch_len: int, micro_batches: int) -> None:
    batch = torch.arange(batch_len)
    slices = split_micro_batches(batch_len, micro_batches)
    expected = torch.tensor_split(batch, min(micro_batches, batch_len))
    assert [batch[s].tolist() for s in slices] == [t.tolist() for t in expected]


def test_split_micro_batches_sizes() -> None:
    sizes = [s.stop - s.start for s in split_micro_batches(10, 4)]
    assert sizes == [3, 3, 2, 2]
    assert split_micro_batches(3, 8) == [slice(0, 1), slice(1, 2), slice(2, 3)]
    assert split_micro_batches(0, 4) == []
    with pytest.raises(ValueError, match=r"micro_batches must be an integer >= 1 \(got 0\)"):
        split_micro_batches(4, 0)
