"""The papers' augmentation of vision training images: random crop with padding 4 and horizontal flip.

Plain torch (torchvision is optional here). What a sample gets is a function of (seed, epoch,
sample index) alone, not of the batch or micro-batch it travels in, so runs stay reproducible
and a technique that cuts a batch into micro-batches sees exactly the images one that does
not cut it sees.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["PADDING", "augment", "draws"]

#: Pixels of zero padding on each side before the crop, as PipeLearn's and MP-SL's code.
PADDING = 4


def draws(samples: int, epoch: int, seed: int, padding: int = PADDING) -> np.ndarray:
    """Per sample of the train set: (row offset, column offset, flip) for one epoch, seeded by (seed, epoch)."""
    rng = np.random.default_rng([seed, epoch, 0xA06])
    offsets = rng.integers(0, 2 * padding + 1, size=(samples, 2))
    flips = rng.integers(0, 2, size=(samples, 1))
    return np.concatenate([offsets, flips], axis=1)


def augment(images: torch.Tensor, table: np.ndarray, padding: int = PADDING) -> torch.Tensor:
    """Crop each of `images` (N, C, H, W) from its zero-padded copy at its row's offsets, flipping it if told.

    `table` holds one (row offset, column offset, flip) row per image (`draws(...)[index]`).
    The padding is 0 in the normalised space, i.e. the train set's mean colour.
    """
    if len(table) != len(images):
        raise ValueError(f"augment needs one draw per image (got {len(table)} draws for {len(images)} images)")
    n, channels, height, width = images.shape
    padded = F.pad(images, (padding,) * 4)
    rows_at = torch.as_tensor(table[:, 0:1], device=images.device) + torch.arange(height, device=images.device)
    cols = torch.arange(width, device=images.device).expand(n, width)
    flip = torch.as_tensor(table[:, 2:3], device=images.device).bool()
    cols = torch.where(flip, cols.flip(1), cols) + torch.as_tensor(table[:, 1:2], device=images.device)
    batch = torch.arange(n, device=images.device)[:, None, None, None]
    channel = torch.arange(channels, device=images.device)[None, :, None, None]
    return padded[batch, channel, rows_at[:, None, :, None], cols[:, None, None, :]]
