"""Partitioners: which sample indices each data owner (part) holds, IID or Dirichlet non-IID."""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["PARTITION_SCHEMES", "partition", "partition_dirichlet", "partition_iid"]

#: Names `partition` accepts as `scheme`.
PARTITION_SCHEMES = ("iid", "dirichlet")


def _check_parts(num_samples: int, parts: int) -> None:
    if isinstance(parts, bool) or not isinstance(parts, (int, np.integer)) or parts < 1:
        raise ValueError(f"parts must be an integer >= 1 (got {parts!r})")
    if parts > num_samples:
        raise ValueError(
            f"cannot give each of {parts} parts a sample: only {num_samples} samples; use fewer parts"
        )


def partition_iid(num_samples: int, parts: int, seed: int) -> list[np.ndarray]:
    """Shuffle 0..num_samples-1 and cut it into `parts` sorted index arrays whose sizes differ by at most one."""
    if isinstance(num_samples, bool) or not isinstance(num_samples, (int, np.integer)) or num_samples < 0:
        raise ValueError(f"num_samples must be an integer >= 0 (got {num_samples!r})")
    _check_parts(num_samples, parts)
    order = np.random.default_rng(seed).permutation(num_samples)
    return [np.sort(chunk) for chunk in np.array_split(order, parts)]


def partition_dirichlet(
    labels: np.ndarray | torch.Tensor, parts: int, alpha: float, seed: int
) -> list[np.ndarray]:
    """Split each class across parts in proportions drawn from Dir(alpha): small alpha, skewed parts.

    A part left empty takes one sample from the largest part (its last drawn),
    repeatedly, so every part holds at least one sample.
    """
    labels = _as_labels(labels)
    _check_parts(len(labels), parts)
    if not (isinstance(alpha, (int, float, np.floating)) and np.isfinite(alpha) and alpha > 0):
        raise ValueError(f"alpha must be a finite number > 0 (got {alpha!r}); try 0.5 for moderate skew")
    rng = np.random.default_rng(seed)
    shares: list[list[np.ndarray]] = [[] for _ in range(parts)]
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        proportions = rng.dirichlet(np.full(parts, float(alpha)))
        cuts = (np.cumsum(proportions)[:-1] * len(members)).astype(np.int64)
        for part, chunk in enumerate(np.split(members, cuts)):
            shares[part].append(chunk)
    held = [np.concatenate(chunks) for chunks in shares]
    return [np.sort(indices) for indices in _fill_empty(held)]


def _fill_empty(held: list[np.ndarray]) -> list[np.ndarray]:
    """Move one sample at a time from the largest part to each empty one (needs parts <= samples)."""
    for part in range(len(held)):
        if len(held[part]) == 0:
            donor = max(range(len(held)), key=lambda p: len(held[p]))
            held[part], held[donor] = held[donor][-1:], held[donor][:-1]
    return held


def _as_labels(labels: np.ndarray | torch.Tensor) -> np.ndarray:
    """Labels as a 1-D numpy array, whatever container they came in."""
    array = labels.detach().cpu().numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)
    if array.ndim != 1:
        raise ValueError(f"labels must be one label per sample (got shape {array.shape})")
    return array


def partition(
    labels: np.ndarray | torch.Tensor,
    parts: int,
    scheme: str = "iid",
    alpha: float = 0.5,
    seed: int = 0,
) -> list[np.ndarray]:
    """Partition samples by `scheme`: "iid" ignores labels and `alpha`, "dirichlet" uses both."""
    if scheme == "iid":
        return partition_iid(len(_as_labels(labels)), parts, seed)
    if scheme == "dirichlet":
        return partition_dirichlet(labels, parts, alpha, seed)
    raise ValueError(f"unknown partition scheme {scheme!r}; choose one of: {', '.join(PARTITION_SCHEMES)}")
