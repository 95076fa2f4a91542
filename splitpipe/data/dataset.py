"""Dataset: normalised train and test tensors, and the helpers every loader builds one with."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["Dataset", "build_dataset", "images_to_nchw", "stratified_split"]

#: Sizes a channel axis may have; anything else is read as a spatial axis.
CHANNEL_SIZES = (1, 3, 4)
#: Most classes a dataset may have: its model's last layer is that wide (ImageNet-21k has about 21,800).
MAX_CLASSES = 100_000


@dataclass(frozen=True)
class Dataset:
    """Images ready for a model: float32 NCHW, square, normalised per channel with train statistics."""

    name: str
    x_train: torch.Tensor
    """float32, N x C x H x H; every channel has mean 0 and std 1 over the train set."""
    y_train: torch.Tensor
    """int64 class indices in [0, num_classes)."""
    x_test: torch.Tensor
    """float32, normalised with the train set's mean and std."""
    y_test: torch.Tensor
    num_classes: int
    augment: bool = False
    """Random crop (padding 4) and horizontal flip of training images (data/augment.py): on by
    default for the torchvision datasets, as in the papers; off for digits, synthetic and npz."""

    def __post_init__(self) -> None:
        problems = _shape_problems(self)
        if problems:
            raise ValueError(f"dataset {self.name!r} is inconsistent: " + "; ".join(problems))

    @property
    def in_channels(self) -> int:
        return int(self.x_train.shape[1])

    @property
    def image_size(self) -> int:
        return int(self.x_train.shape[2])


def _shape_problems(data: Dataset) -> list[str]:
    """Every way `data` breaks its contract, so one error can list them all."""
    problems = []
    for split in ("train", "test"):
        x, y = getattr(data, f"x_{split}"), getattr(data, f"y_{split}")
        if x.dtype != torch.float32 or x.dim() != 4 or x.shape[2] != x.shape[3]:
            problems.append(f"x_{split} must be float32 N,C,H,H (got {x.dtype} {tuple(x.shape)})")
        if y.dtype != torch.int64 or y.dim() != 1 or len(y) != len(x):
            problems.append(f"y_{split} must be int64 of length {len(x)} (got {y.dtype} {tuple(y.shape)})")
    if data.x_train.shape[1:] != data.x_test.shape[1:]:
        problems.append(
            f"x_train and x_test images differ (train {tuple(data.x_train.shape[1:])}, "
            f"test {tuple(data.x_test.shape[1:])})"
        )
    if len(data.x_train) == 0:
        problems.append("x_train is empty")
    return problems


def images_to_nchw(images: np.ndarray, key: str = "x", layout: str = "auto") -> np.ndarray:
    """Return `images` as N,C,H,W, reading N,H,W as one channel and telling NCHW from NHWC.

    With layout "auto" the channel axis is whichever of axes 1 and 3 has size
    1, 3 or 4 while the other two are equal (NCHW wins when both fit, as in
    N,3,3,3). Layout "nchw" trusts the caller and allows any channel count.
    """
    shape = tuple(images.shape)
    if layout not in ("auto", "nchw"):
        raise ValueError(f"layout must be 'auto' or 'nchw' (got {layout!r})")
    if layout == "nchw" and images.ndim == 4 and shape[2] == shape[3]:
        return images
    if images.ndim == 3 and shape[1] == shape[2]:
        return images[:, None, :, :]
    if images.ndim == 4:
        if shape[1] in CHANNEL_SIZES and shape[2] == shape[3]:
            return images
        if shape[3] in CHANNEL_SIZES and shape[1] == shape[2]:
            return images.transpose(0, 3, 1, 2)
    raise ValueError(
        f"{key} has shape {shape}: expected square images as N,H,W, N,C,H,W or N,H,W,C "
        f"with H == W and C in {', '.join(map(str, CHANNEL_SIZES))}"
    )


def _labels(labels: np.ndarray, key: str) -> np.ndarray:
    """Labels as int64, refusing fractions, negatives and anything but one axis."""
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise ValueError(f"{key} must be one label per sample (got shape {labels.shape})")
    if labels.dtype.kind not in "iub" and not (
        labels.dtype.kind == "f" and np.array_equal(labels, np.round(labels))
    ):
        raise ValueError(f"{key} must hold integer class indices (got dtype {labels.dtype})")
    out = labels.astype(np.int64)
    if out.size and out.min() < 0:
        raise ValueError(f"{key} must hold class indices >= 0 (got {out.min()})")
    return out


def _pixels(images: np.ndarray, key: str, layout: str) -> torch.Tensor:
    """NCHW float32 tensor; uint8 is scaled to [0, 1], other numbers are kept as they are."""
    images = images_to_nchw(np.asarray(images), key, layout)
    if images.dtype.kind not in "iufb":
        raise ValueError(f"{key} must hold numbers (got dtype {images.dtype})")
    pixels = torch.from_numpy(np.array(images, dtype=np.float32, order="C"))  # a copy: safe to edit
    return pixels.div_(255.0) if images.dtype == np.uint8 else pixels


def _check_class_count(name: str, classes: int, *labels: np.ndarray) -> None:
    """Refuse, before any tensor is sized by it, a class count the labels do not bear out.

    The model's last layer has one output per class, so labels scaled by 10^6 would make it
    10^7 wide; most of the classes would also never appear.
    """
    if classes > MAX_CLASSES:
        raise ValueError(f"dataset {name!r} has label {classes - 1}, so {classes} classes; the limit is "
                         f"{MAX_CLASSES}: labels must be class indices 0..C-1")
    distinct = len(np.unique(np.concatenate(labels)))
    if classes > 2 * distinct + 8:
        raise ValueError(f"dataset {name!r} has label {classes - 1} but only {distinct} distinct labels: "
                         f"renumber them 0..{distinct - 1}")


def build_dataset(
    name: str,
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    num_classes: int | None = None,
    layout: str = "auto",
) -> Dataset:
    """Check and convert raw arrays, then normalise both splits with the train split's statistics.

    `layout` is as in images_to_nchw; `num_classes` defaults to the largest label + 1.
    """
    train, test = _pixels(x_train, "x_train", layout), _pixels(x_test, "x_test", layout)
    labels_train, labels_test = _labels(y_train, "y_train"), _labels(y_test, "y_test")
    seen = int(max(labels_train.max(initial=0), labels_test.max(initial=0))) + 1
    if num_classes is None:
        num_classes = seen
        _check_class_count(name, seen, labels_train, labels_test)
    elif seen > num_classes:
        raise ValueError(f"dataset {name!r} has label {seen - 1}, beyond num_classes {num_classes}")
    mean = train.mean(dim=(0, 2, 3), keepdim=True)
    std = train.std(dim=(0, 2, 3), keepdim=True, correction=0)
    std = torch.where(std > 0, std, torch.ones_like(std))  # a constant channel stays constant
    return Dataset(
        name=name,
        x_train=train.sub_(mean).div_(std),
        y_train=torch.from_numpy(labels_train),
        x_test=test.sub_(mean).div_(std),
        y_test=torch.from_numpy(labels_test),
        num_classes=num_classes,
    )


def stratified_split(labels: np.ndarray, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Sorted (train, test) indices; ceil(N * test_fraction) go to test, each class in proportion.

    Per-class quotas are rounded by largest remainder so the total is exact
    (1797 digits -> 1437 train, 360 test).
    """
    labels = np.asarray(labels)
    if len(labels) < 2:
        raise ValueError(f"need at least 2 samples to split into train and test (got {len(labels)})")
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be between 0 and 1 (got {test_fraction})")
    n_test = min(max(math.ceil(len(labels) * test_fraction), 1), len(labels) - 1)
    classes, counts = np.unique(labels, return_counts=True)
    exact = counts * n_test / len(labels)
    quotas = np.floor(exact).astype(np.int64)
    short = n_test - int(quotas.sum())
    quotas[np.argsort(-(exact - quotas), kind="stable")[:short]] += 1
    rng = np.random.default_rng(seed)
    test = [rng.permutation(np.flatnonzero(labels == c))[:q] for c, q in zip(classes, quotas, strict=True)]
    is_test = np.zeros(len(labels), dtype=bool)
    is_test[np.concatenate(test)] = True
    return np.flatnonzero(~is_test), np.flatnonzero(is_test)
