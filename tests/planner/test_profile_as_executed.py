"""The profile times units as the executor runs them, and the calibration's runs take turns."""

import time

import torch
from torch import nn

import splitpipe.profile as profile_module
from splitpipe.data import load_dataset
from splitpipe.models import build_model
from splitpipe.planner import calibrate as calibrate_module
from splitpipe.profile import _forward_backward_times, measure_profile


def test_the_input_gradient_is_one_backward_s_not_the_sum_of_the_repeats() -> None:
    """The executor's input is a fresh leaf each time: its gradient is stored, never added to."""
    unit = nn.Linear(4, 3)
    inp = torch.randn(2, 4, requires_grad=True)
    torch.manual_seed(1)
    _forward_backward_times(unit, inp, repeats=3, warmup=2, sync=lambda: None)
    torch.manual_seed(1)
    grad = torch.randn(2, 3)  # the output gradient the profile drew
    assert inp.grad is not None
    assert torch.allclose(inp.grad, grad @ unit.weight.detach())  # one backward's, not five added up


def test_every_profiled_forward_runs_under_the_memory_meter_s_hooks(monkeypatch) -> None:
    calls = []
    real = profile_module.MemoryMeter.saving

    def counted(self, node, key, module):  # type: ignore[no-untyped-def]
        calls.append(key)
        return real(self, node, key, module)

    monkeypatch.setattr(profile_module.MemoryMeter, "saving", counted)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    measure_profile(model, (4,), [1, 2], repeats=2, warmup=1, rounds=1, clock=time.thread_time)
    assert len(calls) == 3 * 2 * (1 + 2)  # units x sizes x (warm-up + repeats)


def test_the_calibration_runs_take_turns_epoch_by_epoch(monkeypatch) -> None:
    order = []
    real = calibrate_module._Run.epoch

    def recorded(self, epoch):  # type: ignore[no-untyped-def]
        order.append((epoch, self.plan.cuts[0], self.plan.micro_batches))
        return real(self, epoch)

    monkeypatch.setattr(calibrate_module._Run, "epoch", recorded)
    data = load_dataset("digits")
    net = build_model("vgg5", data.in_channels, data.image_size, data.num_classes)
    runs = calibrate_module.calibration_runs(net, data, batch_size=4, steps=1, epochs=3)
    assert [epoch for epoch, _, _ in order] == sorted(epoch for epoch, _, _ in order)  # every run's e before e + 1
    assert len(order) == 3 * len(runs) == 3 * 6  # splits 1, 2, 4 x micro-batches 1, 2 (2 samples is B / 2 here)
    for plan, seen in runs:  # the warm-up epoch is not kept
        assert sum(action.op == "F" for _, action, _ in seen) == 2 * 2 * plan.micro_batches
