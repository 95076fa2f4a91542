"""Synthetic images for timing runs: any shape and size, instantly, a little learnable."""

from __future__ import annotations

import torch

from splitpipe.data.dataset import Dataset, build_dataset

__all__ = ["SYNTHETIC_OPTIONS", "load_synthetic"]

#: Keyword options of load_dataset("synthetic", ...) and their defaults.
SYNTHETIC_OPTIONS = {
    "channels": 3,
    "image_size": 32,
    "classes": 10,
    "train_size": 2000,
    "test_size": 500,
}

#: How far apart the class patterns are, in units of the noise's std.
SIGNAL = 0.5


def load_synthetic(
    *,
    seed: int = 0,
    channels: int = 3,
    image_size: int = 32,
    classes: int = 10,
    train_size: int = 2000,
    test_size: int = 500,
) -> Dataset:
    """Each image is its class's fixed random pattern times SIGNAL plus unit Gaussian noise.

    Labels are balanced (i mod classes, shuffled) and easy to learn,
    but the point is realistic tensor shapes for timing, not accuracy.
    """
    sizes = {"channels": channels, "image_size": image_size, "classes": classes}
    sizes |= {"train_size": train_size, "test_size": test_size}
    bad = [f"{k}={v!r}" for k, v in sizes.items() if isinstance(v, bool) or not isinstance(v, int) or v < 1]
    if bad:
        raise ValueError(f"synthetic options must be integers >= 1 (got {', '.join(bad)})")
    gen = torch.Generator().manual_seed(seed)
    patterns = torch.randn(classes, channels, image_size, image_size, generator=gen) * SIGNAL

    def draw(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        labels = (torch.arange(n) % classes)[torch.randperm(n, generator=gen)]
        noise = torch.randn(n, channels, image_size, image_size, generator=gen)
        return patterns[labels] + noise, labels

    x_train, y_train = draw(train_size)
    x_test, y_test = draw(test_size)
    return build_dataset(
        "synthetic",
        x_train.numpy(),
        y_train.numpy(),
        x_test.numpy(),
        y_test.numpy(),
        classes,
        "nchw",
    )
