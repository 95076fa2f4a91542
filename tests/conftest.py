"""Shared fixtures: every test starts from the same seeds."""

import random

import numpy as np
import pytest
import torch

# One intra-op thread: on a loaded 2-core machine torch's default of two threads can make small
# kernels 80x slower (spin-waiting), and results do not depend on it.
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seeded() -> None:
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
