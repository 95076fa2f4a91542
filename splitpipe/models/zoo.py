"""The model zoo: a registry of named builders, each returning an nn.Sequential of units."""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from splitpipe.models.mobilenet import mobilenet_v3_small
from splitpipe.models.resnet import resnet18, resnet101
from splitpipe.models.vgg import VGG5_MIN_IMAGE_SIZE, vgg5, vgg19

__all__ = ["MODEL_NAMES", "build_model", "unit_output_shapes"]


@dataclass(frozen=True)
class _Entry:
    """How to build one zoo model and the smallest image side it accepts."""

    build: Callable[[int, int, int], nn.Sequential]
    min_image_size: int = 1


_REGISTRY: dict[str, _Entry] = {
    "vgg5": _Entry(vgg5, VGG5_MIN_IMAGE_SIZE),
    "resnet18": _Entry(resnet18),
    "mobilenet_v3_small": _Entry(mobilenet_v3_small),
    "vgg19": _Entry(vgg19),
    "resnet101": _Entry(resnet101),
}

#: Names accepted by build_model, in the order the papers use them.
MODEL_NAMES: tuple[str, ...] = tuple(_REGISTRY)


def build_model(
    name: str, in_channels: int, image_size: int, num_classes: int
) -> nn.Sequential:
    """Build zoo model `name` for square images of `in_channels` x `image_size` x `image_size`.

    The result is an nn.Sequential whose children are units, the smallest
    pieces that may sit alone on a node. Weights use PyTorch's default
    initialisation, so seed torch first for a reproducible model.
    """
    entry = _REGISTRY.get(name)
    if entry is None:
        raise ValueError(
            f"unknown model {name!r}; choose one of: {', '.join(MODEL_NAMES)}"
        )
    problems = [
        f"{label} {value!r} must be an integer of at least {least}"
        for label, value, least in (
            ("in_channels", in_channels, 1),
            ("image_size", image_size, entry.min_image_size),
            ("num_classes", num_classes, 1),
        )
        if isinstance(value, bool) or not isinstance(value, int) or value < least
    ]
    if problems:
        raise ValueError(f"cannot build {name}: " + "; ".join(problems))
    return entry.build(in_channels, image_size, num_classes)


def unit_output_shapes(
    model: nn.Sequential, in_channels: int, image_size: int
) -> list[tuple[int, ...]]:
    """Per-sample output shape of each unit, from one dummy forward of a batch of 2.

    Each unit runs as a copy in eval mode under no_grad on the model's device and
    dtype, so `model` itself is only read: the nodes of one launched process share one
    model, and flipping its training flags raced with the other nodes' calls (a dummy
    forward in train mode moved BatchNorm's running statistics, which every replica
    then inherited). Multiply a shape's product by the element size to get a unit's
    activation bytes per sample.
    """
    first = next(model.parameters(), None)
    device = first.device if first is not None else torch.device("cpu")
    dtype = first.dtype if first is not None else torch.get_default_dtype()
    x = torch.zeros(2, in_channels, image_size, image_size, device=device, dtype=dtype)
    shapes: list[tuple[int, ...]] = []
    with torch.no_grad():
        for unit in model:
            x = copy.deepcopy(unit).eval()(x)  # one unit at a time: a copy's memory is one unit's
            shapes.append(tuple(x.shape[1:]))
    return shapes
