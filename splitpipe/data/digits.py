"""The embedded digits dataset (scikit-learn's 1797 8x8 images): real data with no download."""

from __future__ import annotations

from splitpipe.data.dataset import Dataset, build_dataset, stratified_split

__all__ = ["load_digits"]

#: Share of the samples held out for test.
TEST_FRACTION = 0.2


def load_digits(*, seed: int = 0) -> Dataset:
    """1437 train and 360 test images of 1x8x8, split by a stratified shuffle seeded by `seed`."""
    # scikit-learn is slow to import: only when digits are asked for.
    from sklearn.datasets import load_digits as sklearn_digits  # type: ignore[import-untyped]

    bunch = sklearn_digits()
    images, labels = (
        bunch.images[:, None] / 16.0,
        bunch.target,
    )  # pixel values are 0..16
    train, test = stratified_split(labels, TEST_FRACTION, seed)
    return build_dataset("digits", images[train], labels[train], images[test], labels[test], 10, "nchw")
