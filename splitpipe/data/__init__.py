"""Datasets (embedded digits, synthetic, torchvision, .npz), partitioners and batching."""

from splitpipe.data.batching import batches, split_micro_batches
from splitpipe.data.dataset import Dataset
from splitpipe.data.datasets import DATASET_NAMES, load_dataset
from splitpipe.data.partition import (
    PARTITION_SCHEMES,
    partition,
    partition_dirichlet,
    partition_iid,
)

__all__ = [
    "DATASET_NAMES",
    "PARTITION_SCHEMES",
    "Dataset",
    "batches",
    "load_dataset",
    "partition",
    "partition_dirichlet",
    "partition_iid",
    "split_micro_batches",
]
