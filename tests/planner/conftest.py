"""Fixtures of the planner tests: profiles with exact sizes and made-up, deterministic times."""

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from torch import nn

from splitpipe.profile import Profile, UnitCost, state_bytes


def fake_profile(model: nn.Sequential, sample_shape: tuple[int, ...], name: str = "model") -> Profile:
    """Sizes measured from `model` (so bytes match what the emulator sends), times invented:
    unit u takes (u + 1) ms + 0.1 ms per sample forward, twice that backward."""
    x = torch.zeros(2, *sample_shape)
    units = []
    with torch.no_grad():
        for u, unit in enumerate(model):
            unit.eval()
            x = unit(x)
            unit.train()
            forward = {n: (u + 1) * 1e-3 + 1e-4 * n * (1 + u % 3) for n in (1, 8, 32)}
            units.append(UnitCost(forward, {n: 2 * t for n, t in forward.items()}, 2e-4 * (u + 1),
                                  x[0].numel() * x.element_size(), state_bytes(unit)))
    input_bytes = int(torch.Size(sample_shape).numel()) * 4
    return Profile(name, "cpu", input_bytes, tuple(units), copy_s_per_byte=1e-9)


@pytest.fixture
def profile_file(tmp_path: Path) -> Callable[[str, str], Path]:
    """Write the fake profile of zoo `model` on `dataset`'s images; return its path."""
    from splitpipe.data import load_dataset
    from splitpipe.models import build_model

    def make(model: str = "vgg5", dataset: str = "digits") -> Path:
        data = load_dataset(dataset)
        net = build_model(model, data.in_channels, data.image_size, data.num_classes)
        path = tmp_path / f"{model}.json"
        path.write_text(fake_profile(net, tuple(data.x_train.shape[1:]), model).to_json())
        return path

    return make
