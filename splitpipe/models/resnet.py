"""ResNet family as units (CIFAR-style stem): each residual block is one unit."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

__all__: list[str] = []

#: Width of each of the four stages; a stage after the first halves the side in its first block.
STAGE_WIDTHS = (64, 128, 256, 512)


class _Block(nn.Module):
    """A residual block; `expansion` is its output width over its stage width."""

    expansion: ClassVar[int] = 1

    def __init__(self, in_channels: int, width: int, stride: int) -> None:
        super().__init__()
        out_channels = width * self.expansion
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(
                    in_channels, out_channels, kernel_size=1, stride=stride, bias=False
                ),
                nn.BatchNorm2d(out_channels),
            )


class BasicBlock(_Block):
    """Two 3x3 convs (ResNet-18/34)."""

    expansion = 1

    def __init__(self, in_channels: int, width: int, stride: int) -> None:
        super().__init__(in_channels, width, stride)
        self.conv1 = nn.Conv2d(
            in_channels, width, 3, stride=stride, padding=1, bias=False
        )
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        result: torch.Tensor = self.relu(out + self.shortcut(x))
        return result


class Bottleneck(_Block):
    """1x1 reduce, 3x3 (carrying the stride, as torchvision's v1.5), 1x1 expand by 4 (ResNet-50+)."""

    expansion = 4

    def __init__(self, in_channels: int, width: int, stride: int) -> None:
        super().__init__(in_channels, width, stride)
        out_channels = width * self.expansion
        self.conv1 = nn.Conv2d(in_channels, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, out_channels, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        result: torch.Tensor = self.relu(out + self.shortcut(x))
        return result


def _resnet(
    block: type[_Block],
    blocks_per_stage: tuple[int, ...],
    in_channels: int,
    num_classes: int,
    paper_layers: bool = False,
) -> nn.Sequential:
    """Stem unit, one unit per block, head unit (average pool + flatten + linear).

    With `paper_layers` the units are torchvision's layers with each BN and ReLU folded into
    the conv before it (MP-SL's count): stem, a pool slot, the blocks, [average pool +
    flatten], [linear]. The CIFAR stem keeps the side, so the pool slot (where ImageNet's
    ResNet has its max-pool) is an identity, kept so that unit k is the paper's layer k.
    """
    units: list[nn.Module] = [
        nn.Sequential(
            nn.Conv2d(in_channels, 64, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(64),
            nn.ReLU(),
        )
    ]
    channels = 64
    for stage, (width, count) in enumerate(
        zip(STAGE_WIDTHS, blocks_per_stage, strict=True)
    ):
        for index in range(count):
            stride = 2 if stage > 0 and index == 0 else 1
            units.append(block(channels, width, stride))
            channels = width * block.expansion
    if paper_layers:
        units.insert(1, nn.Identity())
        units.append(nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten()))
        units.append(nn.Linear(channels, num_classes))
        return nn.Sequential(*units)
    units.append(
        nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, num_classes)
        )
    )
    return nn.Sequential(*units)


def resnet18(in_channels: int, image_size: int, num_classes: int) -> nn.Sequential:
    """CIFAR ResNet-18 in 10 units: stem, 8 basic blocks, head.

    The stem is a stride-1 3x3 conv without max-pool, so the three stride-2
    stages take 32x32 to 4x4 and 8x8 to 1x1; the adaptive pool makes the head
    independent of `image_size`.
    """
    del image_size  # the adaptive pool absorbs any side
    return _resnet(BasicBlock, (2, 2, 2, 2), in_channels, num_classes)


def resnet101(in_channels: int, image_size: int, num_classes: int) -> nn.Sequential:
    """CIFAR-style ResNet-101 in MP-SL's 37 layers, so that its cut indices mean the same here.

    Units: stem (conv + BN + ReLU), the pool slot (an identity in the CIFAR
    stem), 33 bottleneck blocks (3, 4, 23, 3) at units 2-34, [average pool +
    flatten], [linear classes].
    """
    del image_size  # the adaptive pool absorbs any side
    return _resnet(Bottleneck, (3, 4, 23, 3), in_channels, num_classes, paper_layers=True)
