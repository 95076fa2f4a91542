"""Datasets from a numpy .npz file: arrays x, y and optionally x_test, y_test."""

from __future__ import annotations

import os
import zipfile
import zlib

import numpy as np

from splitpipe.data.dataset import (
    Dataset,
    build_dataset,
    images_to_nchw,
    stratified_split,
)

__all__ = ["load_npz"]

#: What numpy raises for a file that is not a whole npz: truncated, corrupt, pickled, not numpy.
_UNREADABLE = (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error)
#: Share of the samples held out for test when the file has no test arrays.
TEST_FRACTION = 0.2


def load_npz(path: str, *, seed: int = 0) -> Dataset:
    """Load `path`; without x_test and y_test, split x and y 80/20 by a stratified shuffle seeded by `seed`.

    Images may be N,H,W, N,C,H,W or N,H,W,C (C in 1, 3, 4), uint8 (scaled by
    1/255) or any numeric type; arrays are read with allow_pickle=False.
    """
    full = os.path.abspath(os.path.expanduser(path))
    if not os.path.isfile(full):
        raise ValueError(f"npz file not found: {full}")
    arrays = _read(full)
    try:
        return _build(f"npz:{path}", arrays, seed)
    except ValueError as err:
        raise ValueError(f"npz file {full}: {err}") from None


def _read(full: str) -> dict[str, np.ndarray]:
    """The arrays the dataset needs: x, y, and x_test, y_test when either is present."""
    try:
        archive = np.load(full, allow_pickle=False)
    except _UNREADABLE as err:  # not numpy at all, truncated, or pickled data
        raise ValueError(f"cannot read npz file {full}: {err} (truncated or not an npz?)") from None
    if not hasattr(archive, "files"):  # np.load returns a bare array for .npy
        raise ValueError(f"{full} is a single .npy array, not an .npz archive of x and y")
    with archive:
        keys = sorted(archive.files)
        has_test = "x_test" in keys or "y_test" in keys
        wanted = ("x", "y", "x_test", "y_test") if has_test else ("x", "y")
        missing = [k for k in wanted if k not in keys]
        if missing:
            raise ValueError(
                f"npz file {full} has no array {', '.join(map(repr, missing))} "
                f"(arrays present: {', '.join(keys) or 'none'})"
            )
        try:
            return {k: archive[k] for k in wanted}
        except _UNREADABLE as err:  # object arrays need pickle, which stays off; members can be corrupt
            raise ValueError(f"cannot read npz file {full}: {err}") from None


def _build(name: str, arrays: dict[str, np.ndarray], seed: int) -> Dataset:
    """Check the arrays under their names in the file, then build (splitting if no test arrays)."""
    for x_key, y_key in (("x", "y"), ("x_test", "y_test")):
        if x_key not in arrays:
            continue
        arrays[x_key] = images_to_nchw(arrays[x_key], x_key)
        if arrays[y_key].ndim != 1 or len(arrays[x_key]) != len(arrays[y_key]):
            raise ValueError(
                f"{y_key} must hold one label per image of {x_key} "
                f"({x_key} has {len(arrays[x_key])} images, {y_key} has shape {arrays[y_key].shape})"
            )
    if "x_test" in arrays:
        x_train, y_train = arrays["x"], arrays["y"]
        x_test, y_test = arrays["x_test"], arrays["y_test"]
    else:
        train, test = stratified_split(arrays["y"], TEST_FRACTION, seed)
        x_train, y_train = arrays["x"][train], arrays["y"][train]
        x_test, y_test = arrays["x"][test], arrays["y"][test]
    return build_dataset(name, x_train, y_train, x_test, y_test, layout="nchw")
