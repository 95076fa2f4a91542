"""The papers' crop-and-flip augmentation: shapes kept, seeded, and it does crop and flip."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from splitpipe.config import RunConfig
from splitpipe.data import load_dataset
from splitpipe.data.augment import PADDING, augment, draws
from splitpipe.experiment import emulate, prepare


def images(n: int = 3) -> torch.Tensor:
    return torch.arange(n * 2 * 6 * 6, dtype=torch.float32).reshape(n, 2, 6, 6) + 1


def test_shapes_are_kept_and_draws_are_seeded_per_epoch() -> None:
    x = images(5)
    table = draws(5, epoch=3, seed=7)
    assert augment(x, table).shape == x.shape
    assert np.array_equal(draws(5, 3, 7), table)
    assert not np.array_equal(draws(50, 4, 7), draws(50, 3, 7))
    assert not np.array_equal(draws(50, 3, 8), draws(50, 3, 7))
    assert table[:, :2].min() >= 0 and table[:, :2].max() <= 2 * PADDING and set(table[:, 2]) <= {0, 1}


def test_crops_shift_into_the_zero_padding_and_flips_mirror() -> None:
    x = images(4)
    table = np.array([[PADDING, PADDING, 0], [PADDING, PADDING, 1], [0, 0, 0], [PADDING + 2, PADDING - 1, 0]])
    out = augment(x, table)
    assert torch.equal(out[0], x[0])  # centred crop, no flip: the image itself
    assert torch.equal(out[1], x[1].flip(-1))
    assert torch.equal(out[2, :, PADDING:, PADDING:], x[2, :, :-PADDING, :-PADDING])  # shifted down-right
    assert (out[2, :, :PADDING] == 0).all() and (out[2, :, :, :PADDING] == 0).all()
    assert torch.equal(out[3, :, :-2, 1:], x[3, :, 2:, :-1])


def test_draws_crop_and_flip_some_images_and_not_others() -> None:
    table = draws(1000, 0, 0)
    assert 400 < table[:, 2].sum() < 600
    assert len({tuple(row) for row in table[:, :2]}) == (2 * PADDING + 1) ** 2


@pytest.mark.parametrize("technique", ["sfl", "pipelearn"])
def test_augmented_runs_are_reproducible(technique: str) -> None:
    config = RunConfig(technique=technique, dataset="digits:augment=true", devices=2, epochs=1, batch_size=64,
                       micro_batches=2, progress=False)
    first, second = (emulate(prepare(config)).model.state_dict() for _ in range(2))
    plain = emulate(prepare(config.with_(dataset="digits"))).model.state_dict()
    assert all(torch.equal(first[k], second[k]) for k in first)
    assert not all(torch.equal(first[k], plain[k]) for k in first)
    assert load_dataset("digits").augment is False
