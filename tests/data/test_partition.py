"""Tests of the IID and Dirichlet partitioners: coverage, determinism, skew and errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from splitpipe.data import partition, partition_dirichlet, partition_iid

LABELS = np.repeat(np.arange(10), 50)  # 500 samples, 10 balanced classes
np.random.default_rng(0).shuffle(LABELS)


def assert_covers(parts: list[np.ndarray], num_samples: int) -> None:
    """Every sample in exactly one part, and no part empty."""
    assert all(len(p) > 0 for p in parts)
    assert all(p.dtype.kind == "i" for p in parts)
    assert np.array_equal(np.sort(np.concatenate(parts)), np.arange(num_samples))


@pytest.mark.parametrize("seed", [0, 1, 7])
@pytest.mark.parametrize("parts", [1, 3, 8])
def test_iid_covers_every_sample_once(seed: int, parts: int) -> None:
    result = partition_iid(500, parts, seed)
    assert len(result) == parts
    assert_covers(result, 500)
    sizes = [len(p) for p in result]
    assert max(sizes) - min(sizes) <= 1


def test_iid_is_seed_deterministic() -> None:
    first, again, other = (partition_iid(100, 4, s) for s in (5, 5, 6))
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    assert not all(np.array_equal(a, b) for a, b in zip(first, other, strict=True))


@pytest.mark.parametrize("seed", [0, 1, 7])
@pytest.mark.parametrize("alpha", [0.1, 1.0, 100.0])
def test_dirichlet_covers_every_sample_once(seed: int, alpha: float) -> None:
    result = partition_dirichlet(LABELS, 8, alpha, seed)
    assert len(result) == 8
    assert_covers(result, len(LABELS))


def test_dirichlet_is_seed_deterministic() -> None:
    first, again, other = (partition_dirichlet(LABELS, 5, 0.5, s) for s in (2, 2, 3))
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    assert not all(np.array_equal(a, b) for a, b in zip(first, other, strict=True))


def max_class_share(parts: list[np.ndarray]) -> float:
    """The largest share one class takes of any part."""
    return max(float(np.bincount(LABELS[p]).max()) / len(p) for p in parts)


def test_small_alpha_is_skewed_and_large_alpha_is_not() -> None:
    assert max_class_share(partition_dirichlet(LABELS, 5, 0.1, 0)) > 0.5
    assert max_class_share(partition_dirichlet(LABELS, 5, 100.0, 0)) < 0.2


def test_dirichlet_fills_every_part_even_when_starved() -> None:
    labels = np.zeros(12, dtype=np.int64)  # one class, tiny alpha: nearly all in one part
    for seed in range(5):
        result = partition_dirichlet(labels, 12, 0.01, seed)
        assert [len(p) for p in result] == [1] * 12
        assert_covers(result, 12)


def test_dirichlet_accepts_tensor_labels() -> None:
    from_tensor = partition_dirichlet(torch.from_numpy(LABELS), 4, 1.0, 0)
    from_array = partition_dirichlet(LABELS, 4, 1.0, 0)
    assert all(np.array_equal(a, b) for a, b in zip(from_tensor, from_array, strict=True))


def test_partition_dispatches_on_scheme() -> None:
    iid = partition(LABELS, 4, "iid", seed=1)
    assert all(np.array_equal(a, b) for a, b in zip(iid, partition_iid(500, 4, 1), strict=True))
    skewed = partition(LABELS, 4, "dirichlet", alpha=0.2, seed=1)
    expected = partition_dirichlet(LABELS, 4, 0.2, 1)
    assert all(np.array_equal(a, b) for a, b in zip(skewed, expected, strict=True))


def test_errors_name_the_bad_value() -> None:
    with pytest.raises(ValueError, match=r"5 parts a sample: only 3 samples"):
        partition_iid(3, 5, 0)
    with pytest.raises(ValueError, match=r"5 parts a sample: only 3 samples"):
        partition_dirichlet(np.zeros(3, dtype=np.int64), 5, 1.0, 0)
    for alpha in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match=r"alpha must be a finite number > 0 \(got"):
            partition_dirichlet(LABELS, 2, alpha, 0)
    with pytest.raises(ValueError, match=r"parts must be an integer >= 1 \(got 0\)"):
        partition_iid(10, 0, 0)
    with pytest.raises(
        ValueError,
        match=r"unknown partition scheme 'zipf'; choose one of: iid, dirichlet",
    ):
        partition(LABELS, 2, "zipf")
