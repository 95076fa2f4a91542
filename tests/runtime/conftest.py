"""Fixtures of the runtime tests: a tiny learnable data set (the global conftest sets one torch thread)."""

import numpy as np
import pytest


@pytest.fixture(scope="module")
def tiny_npz(tmp_path_factory: pytest.TempPathFactory) -> str:
    """240 learnable 8x8 images of 10 classes (192 train, 48 test): a few steps per epoch."""
    rng = np.random.default_rng(0)
    y = np.arange(240) % 10
    x = (rng.normal(size=(10, 8, 8))[y] + rng.normal(size=(240, 8, 8))).astype(np.float32)
    path = tmp_path_factory.mktemp("data") / "tiny.npz"
    np.savez(path, x=x, y=y)
    return str(path)
