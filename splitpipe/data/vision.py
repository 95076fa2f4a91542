"""CIFAR-10, MNIST, Fashion-MNIST and SVHN through torchvision, an optional dependency imported only here."""

from __future__ import annotations

import importlib
import os
from types import ModuleType

import numpy as np

from splitpipe.data.dataset import Dataset, build_dataset

__all__ = ["VISION_DATASETS", "default_root", "load_vision"]

#: Our name -> torchvision class, and whether it picks the split by `split=` (SVHN) or `train=`.
VISION_DATASETS = {
    "cifar10": ("CIFAR10", "train"),
    "mnist": ("MNIST", "train"),
    "fashion-mnist": ("FashionMNIST", "train"),
    "svhn": ("SVHN", "split"),
}

#: All four have ten classes.
NUM_CLASSES = 10


def default_root() -> str:
    """Where datasets live unless told: $SPLITPIPE_DATA, else ~/.cache/splitpipe."""
    return os.environ.get("SPLITPIPE_DATA") or os.path.expanduser(os.path.join("~", ".cache", "splitpipe"))


def load_vision(name: str, *, root: str | None = None, download: bool = False) -> Dataset:
    """Load `name`'s train and test splits from `root`; fetch them first only if `download` is True."""
    if name not in VISION_DATASETS:
        raise ValueError(f"unknown torchvision dataset {name!r}; choose one of: {', '.join(VISION_DATASETS)}")
    if type(download) is not bool:
        raise ValueError(f"option download must be True or False (got {download!r})")
    datasets = _torchvision_datasets(name)
    root = os.path.expanduser(root) if root is not None else default_root()
    class_name, split_by = VISION_DATASETS[name]
    splits: list[tuple[np.ndarray, np.ndarray]] = []
    for train in (True, False):
        kwargs = {"split": "train" if train else "test"} if split_by == "split" else {"train": train}
        try:
            split = getattr(datasets, class_name)(root, download=download, **kwargs)
        except RuntimeError as err:  # torchvision's "Dataset not found ... use download=True"
            raise ValueError(
                f"dataset {name!r} not found under {root} ({err}); download it once with "
                f"load_dataset({name!r}, root={root!r}, download=True), "
                "or set SPLITPIPE_DATA (or root) to a folder that holds it"
            ) from None
        labels = split.labels if split_by == "split" else split.targets
        splits.append((np.asarray(split.data), np.asarray(labels)))
    (x_train, y_train), (x_test, y_test) = splits
    return build_dataset(name, x_train, y_train, x_test, y_test, NUM_CLASSES)


def _torchvision_datasets(name: str) -> ModuleType:
    """torchvision.datasets, or an error that says how to install it."""
    try:
        return importlib.import_module("torchvision.datasets")
    except ImportError:
        raise ValueError(f"dataset {name!r} needs torchvision: pip install 'splitpipe[vision]'") from None
