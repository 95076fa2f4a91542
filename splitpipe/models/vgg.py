"""VGG family as units: PipeLearn's 5-unit VGG-5 and a BatchNorm VGG-19 whose pooling fits small images."""

from __future__ import annotations

from torch import nn

__all__: list[str] = []

#: VGG-19 feature layers: output channels of each 3x3 conv, "M" for a 2x2 max-pool.
VGG19_LAYERS: tuple[int | str, ...] = (
    64, 64, "M",
    128, 128, "M",
    256, 256, 256, 256, "M",
    512, 512, 512, 512, "M",
    512, 512, 512, 512, "M",
)  # fmt: skip

#: Smallest image side VGG-5 accepts: its two 2x2 max-pools must leave at least 1x1.
VGG5_MIN_IMAGE_SIZE = 4


def _conv_unit(in_channels: int, out_channels: int) -> nn.Sequential:
    """Conv3x3 (padding 1, so the side is kept) + BatchNorm + ReLU."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(),
    )


def vgg5(in_channels: int, image_size: int, num_classes: int) -> nn.Sequential:
    """PipeLearn's VGG-5 in exactly 5 units, as defined in their code.

    Units: [conv 32 + pool], [conv 64 + pool], [conv 64], [flatten + linear 128],
    [linear classes]. There is no activation between the two linears, as in
    their code. A side not divisible by 4 is floored, as the max-pools do.
    `image_size` must be at least VGG5_MIN_IMAGE_SIZE (build_model checks it).
    """
    side = image_size // 2 // 2
    first = _conv_unit(in_channels, 32)
    first.append(nn.MaxPool2d(2))
    second = _conv_unit(32, 64)
    second.append(nn.MaxPool2d(2))
    return nn.Sequential(
        first,
        second,
        _conv_unit(64, 64),
        nn.Sequential(nn.Flatten(), nn.Linear(side * side * 64, 128)),
        nn.Linear(128, num_classes),
    )


def vgg19(in_channels: int, image_size: int, num_classes: int) -> nn.Sequential:
    """VGG-19 with BatchNorm in MP-SL's 25 layers, so that its cut indices mean the same here.

    Layers, as torchvision's VGG-19 flattened with each activation folded into
    the layer before it: 16 conv units (conv + BN + ReLU), 5 max-pools each a
    unit of its own (units 2, 5, 10, 15, 20), the flatten where torchvision
    has its average pool (unit 21), then [linear 512 + ReLU], [linear 512 +
    ReLU], [linear classes], without dropout so that training is
    deterministic. A max-pool that would shrink the side below 1x1 is an
    identity, so 8x8 digits keep three of the five pools and the count stays 25.
    """
    units: list[nn.Module] = []
    channels, side = in_channels, image_size
    for layer in VGG19_LAYERS:
        if isinstance(layer, str):
            units.append(nn.MaxPool2d(2) if side // 2 >= 1 else nn.Identity())
            side = max(1, side // 2)
            continue
        units.append(_conv_unit(channels, layer))
        channels = layer
    units.append(nn.Flatten())
    units.append(nn.Sequential(nn.Linear(channels * side * side, 512), nn.ReLU()))
    units.append(nn.Sequential(nn.Linear(512, 512), nn.ReLU()))
    return nn.Sequential(*units, nn.Linear(512, num_classes))
