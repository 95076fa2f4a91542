"""Mini-batches of a part's samples per epoch, and their cut into micro-batches."""

from __future__ import annotations

import itertools

import numpy as np

__all__ = ["batches", "split_micro_batches"]


def batches(indices: np.ndarray, batch_size: int, epoch: int, seed: int) -> list[np.ndarray]:
    """Shuffle `indices` by a generator seeded with (seed, epoch) and cut batches of `batch_size`.

    The last batch is smaller when the size does not divide; no sample is dropped.
    """
    problems = [
        f"{name} must be an integer >= {low} (got {value!r})"
        for name, value, low in (
            ("batch_size", batch_size, 1),
            ("epoch", epoch, 0),
            ("seed", seed, 0),
        )
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low
    ]
    if problems:
        raise ValueError("; ".join(problems))
    order = np.random.default_rng([seed, epoch]).permutation(np.asarray(indices))
    return [order[start : start + batch_size] for start in range(0, len(order), batch_size)]


def split_micro_batches(batch_len: int, micro_batches: int) -> list[slice]:
    """min(micro_batches, batch_len) contiguous slices covering the batch, sizes differing by at most one.

    The first batch_len % count slices are the longer ones, as in torch.tensor_split:
    split_micro_batches(10, 4) -> sizes 3, 3, 2, 2.
    """
    if (
        isinstance(micro_batches, bool)
        or not isinstance(micro_batches, (int, np.integer))
        or micro_batches < 1
    ):
        raise ValueError(f"micro_batches must be an integer >= 1 (got {micro_batches!r})")
    if isinstance(batch_len, bool) or not isinstance(batch_len, (int, np.integer)) or batch_len < 0:
        raise ValueError(f"batch_len must be an integer >= 0 (got {batch_len!r})")
    count = min(micro_batches, batch_len)
    if count == 0:
        return []
    size, longer = divmod(batch_len, count)
    bounds = np.cumsum([0] + [size + 1] * longer + [size] * (count - longer))
    return [slice(int(a), int(b)) for a, b in itertools.pairwise(bounds)]
