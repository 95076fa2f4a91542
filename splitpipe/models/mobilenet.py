"""MobileNetV3-Small in plain torch.nn, as units, with strides reduced so small images keep a feature map."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

__all__: list[str] = []

#: Below this image side the stem and the first block keep stride 1 (CIFAR-style).
SMALL_IMAGE_SIZE = 64

#: Channels after the stem and width of the head's hidden linear (torchvision's values).
STEM_CHANNELS = 16
HEAD_CHANNELS = 1024

# BatchNorm settings of torchvision's MobileNetV3.
_BN_EPS = 0.001
_BN_MOMENTUM = 0.01


class Bneck(NamedTuple):
    """One inverted-residual block of torchvision's MobileNetV3-Small config."""

    kernel: int
    expanded: int
    out_channels: int
    use_se: bool
    hardswish: bool
    stride: int


#: The 11 bneck blocks of MobileNetV3-Small (torchvision's `_mobilenet_v3_conf`).
SMALL_BLOCKS: tuple[Bneck, ...] = (
    Bneck(3, 16, 16, True, False, 2),
    Bneck(3, 72, 24, False, False, 2),
    Bneck(3, 88, 24, False, False, 1),
    Bneck(5, 96, 40, True, True, 2),
    Bneck(5, 240, 40, True, True, 1),
    Bneck(5, 240, 40, True, True, 1),
    Bneck(5, 120, 48, True, True, 1),
    Bneck(5, 144, 48, True, True, 1),
    Bneck(5, 288, 96, True, True, 2),
    Bneck(5, 576, 96, True, True, 1),
    Bneck(5, 576, 96, True, True, 1),
)


def _make_divisible(value: float, divisor: int = 8) -> int:
    """Round to a multiple of `divisor`, never below 90% of `value` (as torchvision)."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


def _conv_bn(
    in_channels: int,
    out_channels: int,
    kernel: int,
    stride: int = 1,
    groups: int = 1,
    activation: type[nn.Module] | None = None,
) -> nn.Sequential:
    """Conv (padding keeps the side at stride 1) + BatchNorm + optional activation."""
    layers: list[nn.Module] = [
        nn.Conv2d(
            in_channels,
            out_channels,
            kernel,
            stride,
            (kernel - 1) // 2,
            groups=groups,
            bias=False,
        ),
        nn.BatchNorm2d(out_channels, eps=_BN_EPS, momentum=_BN_MOMENTUM),
    ]
    if activation is not None:
        layers.append(activation())
    return nn.Sequential(*layers)


class SqueezeExcite(nn.Module):
    """Channel attention: global pool, squeeze to a quarter, expand, hard-sigmoid gate."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        squeezed = _make_divisible(channels // 4)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, squeezed, 1)
        self.relu = nn.ReLU()
        self.fc2 = nn.Conv2d(squeezed, channels, 1)
        self.gate = nn.Hardsigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale: torch.Tensor = self.gate(self.fc2(self.relu(self.fc1(self.pool(x)))))
        return scale * x


class InvertedResidual(nn.Module):
    """Expand 1x1, depthwise kxk, optional squeeze-excite, project 1x1; residual when shapes match."""

    def __init__(self, in_channels: int, config: Bneck, stride: int) -> None:
        super().__init__()
        activation: type[nn.Module] = nn.Hardswish if config.hardswish else nn.ReLU
        layers: list[nn.Module] = []
        if config.expanded != in_channels:
            layers.append(
                _conv_bn(in_channels, config.expanded, 1, activation=activation)
            )
        layers.append(
            _conv_bn(
                config.expanded,
                config.expanded,
                config.kernel,
                stride,
                config.expanded,
                activation,
            )
        )
        if config.use_se:
            layers.append(SqueezeExcite(config.expanded))
        layers.append(_conv_bn(config.expanded, config.out_channels, 1))
        self.block = nn.Sequential(*layers)
        self.residual = stride == 1 and in_channels == config.out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.block(x)
        return out + x if self.residual else out


def _stride(side: int, wanted: int) -> int:
    """Keep a stride of 2 only while the output side stays at least 2 (a padded conv gives ceil(side/2))."""
    return wanted if wanted == 1 or -(-side // 2) >= 2 else 1


def mobilenet_v3_small(
    in_channels: int, image_size: int, num_classes: int
) -> nn.Sequential:
    """MobileNetV3-Small in 15 units: stem, 11 bneck blocks, last conv, head, classifier.

    Images smaller than SMALL_IMAGE_SIZE keep stride 1 in the stem and the
    first block (CIFAR-style); any later stride 2 is dropped where it would
    leave a side below 2, so 8x8 digits end at 2x2 and 32x32 at 4x4. The head
    is pool + flatten + linear 1024 + hardswish, without torchvision's dropout
    so that training is deterministic; the classifier is linear 1024 -> classes.
    """
    small = image_size < SMALL_IMAGE_SIZE
    stem_stride = 1 if small else _stride(image_size, 2)
    side = -(-image_size // stem_stride)
    units: list[nn.Module] = [
        _conv_bn(in_channels, STEM_CHANNELS, 3, stem_stride, activation=nn.Hardswish)
    ]
    channels = STEM_CHANNELS
    for index, config in enumerate(SMALL_BLOCKS):
        stride = 1 if small and index == 0 else _stride(side, config.stride)
        units.append(InvertedResidual(channels, config, stride))
        channels, side = config.out_channels, -(-side // stride)
    last = 6 * channels
    units.append(_conv_bn(channels, last, 1, activation=nn.Hardswish))
    units.append(
        nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(last, HEAD_CHANNELS),
            nn.Hardswish(),
        )
    )
    units.append(nn.Linear(HEAD_CHANNELS, num_classes))
    return nn.Sequential(*units)
