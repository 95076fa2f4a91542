"""Memory per node: hand-counted bytes of tiny Linear models, and the figure in report.json."""

import numpy as np
import pytest
import torch
from torch import nn

from splitpipe.config import RunConfig
from splitpipe.data import Dataset
from splitpipe.engine.emulate import TensorExecutor
from splitpipe.engine.events import run_schedule
from splitpipe.engine.memory import MemoryMeter, static_bytes
from splitpipe.engine.timing import MeasuredTiming
from splitpipe.experiment import emulate, prepare
from splitpipe.network import PROFILES
from splitpipe.plan import Plan, stage_topology, star_topology
from splitpipe.schedules import build_schedule

F32, I64 = 4, 8


def tiny_dataset(samples: int) -> Dataset:
    """2x2 one-channel images (4 features), two classes."""
    x = torch.randn(samples, 1, 2, 2)
    y = torch.arange(samples) % 2
    return Dataset("tiny", x, y, x.clone(), y.clone(), 2)


def run_epochs(model: nn.Sequential, plan: Plan, dataset: Dataset, epochs: int = 1) -> TensorExecutor:
    speeds = {n.name: 1.0 for n in plan.topology.nodes}
    executor = TensorExecutor(model, plan, dataset, [np.arange(len(dataset.y_train))], MeasuredTiming(speeds))
    for epoch in range(epochs):
        schedule = build_schedule(plan, epoch)
        executor.begin_epoch(epoch, schedule)
        run_schedule(schedule, plan.topology, executor, epoch)
        executor.end_epoch()
    return executor


def test_sfl_device_peak_equals_hand_count() -> None:
    """Device part Linear(4, 3) (60 B of weights), batches of b = 4, two steps.

    The peak is at the end of the second Backward: weights 60 + gradients 60 + momentum 60
    (from the first Step) + the saved input b*4*4 + the output b*3*4 + the incoming
    gradient b*3*4 = 180 + 40 b. The labels (b*8) left with the activation before.
    """
    b = 4
    model = nn.Sequential(nn.Sequential(nn.Flatten(), nn.Linear(4, 3)), nn.Linear(3, 2))
    topology = star_topology(1, [PROFILES["none"]], [1.0], 1.0)
    plan = Plan("sfl", topology, num_units=2, cuts=(1,), batch_size=b, micro_batches=1,
                shard_sizes=(2 * b,), owners=("device0",), aggregation_interval=5)
    executor = run_epochs(model, plan, tiny_dataset(2 * b))
    weights = (4 * 3 + 3) * F32
    assert weights == 60
    assert executor.memory_peaks()["device0"] == 3 * weights + b * 4 * F32 + b * 3 * F32 + b * 3 * F32
    assert executor.memory.pending() == 0


def test_ftpipehd_middle_stage_peak_equals_hand_count() -> None:
    """Stage 1 holds Linear(3, 3) (48 B); micro-batches of m = 2 samples, N = 2, two steps.

    1F1B on stage 1 of 3 is F0 F1 B0 B1. The peak is at the end of B0 of the second step:
    weights, gradients and momentum 3 * 48, both micro-batches' input and output
    (4 * 3m floats), B0's incoming gradient and the input gradient it produced (2 * 3m
    floats): 144 + 72 m.
    """
    m = 2
    model = nn.Sequential(nn.Sequential(nn.Flatten(), nn.Linear(4, 3)), nn.Linear(3, 3), nn.Linear(3, 2))
    topology = stage_topology([1.0, 1.0, 1.0], [PROFILES["none"]])
    plan = Plan("ftpipehd", topology, num_units=3, cuts=(1, 2), batch_size=2 * m, micro_batches=2,
                shard_sizes=(4 * m,), owners=("central",), server="central", chain=("worker1", "worker2"))
    executor = run_epochs(model, plan, tiny_dataset(4 * m))
    weights = (3 * 3 + 3) * F32
    assert executor.memory_peaks()["worker1"] == 3 * weights + 6 * (3 * m * F32)


def test_static_bytes_count_gradients_and_momentum() -> None:
    layer = nn.Linear(5, 2)  # 12 parameters
    optimizer = torch.optim.SGD(layer.parameters(), lr=0.1, momentum=0.9)
    assert static_bytes(layer, optimizer) == 12 * F32
    layer(torch.randn(3, 5)).sum().backward()
    assert static_bytes(layer, optimizer) == 2 * 12 * F32
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    assert static_bytes(layer, optimizer) == 2 * 12 * F32  # weights + momentum, no gradients


def test_saved_tensors_are_counted_once_and_without_parameters() -> None:
    meter = MemoryMeter()
    layer = nn.Linear(8, 8)
    x = torch.randn(4, 8, requires_grad=True)
    with meter.saving("n", "k", layer):
        out = torch.relu(layer(x))  # saves x (and the weight, excluded) and relu's output
    meter.hold("n", "k", x, out)  # already counted: no change
    assert meter.measure("n", {}) == (4 * 8 + 4 * 8) * F32
    assert meter.measure("n", {"a": out.detach(), "b": {"w": torch.zeros(3)}}) == (64 + 3) * F32
    meter.release("k")
    assert meter.measure("n", {}) == 0
    assert meter.peaks() == {"n": (64 + 3) * F32}


def test_report_has_memory_per_node_growing_with_owners() -> None:
    """MP-SL's compute node holds one replica per owner: more owners, more bytes."""
    base = RunConfig(technique="mpsl", cuts=(1, 4), micro_batches=1, epochs=1, batch_size=64,
                     network="none", progress=False)
    peaks = {}
    for owners in (1, 3):
        result = emulate(prepare(base.with_(owners=owners)))
        row = result.report["epochs"][0]
        assert set(row["memory_bytes"]) >= {"compute0", "aggregator", "device0"}
        assert all(v > 0 for v in row["memory_bytes"].values())
        peaks[owners] = row["memory_bytes"]["compute0"]
    assert peaks[3] > 2 * peaks[1]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_allocator_peak_is_reported() -> None:
    config = RunConfig(technique="mpsl", cuts=(1, 4), owners=2, micro_batches=1, epochs=1, batch_size=64,
                       network="none", server_device="cuda", progress=False)
    row = emulate(prepare(config)).report["epochs"][0]
    (nodes, peak), = row["cuda_memory_bytes"].items()  # one GPU, shared by the server-side nodes
    assert set(nodes.split("+")) == {"aggregator", "compute0"}
    assert peak >= row["memory_bytes"]["compute0"] > 0


def test_views_and_shared_storages_of_saved_tensors_are_counted_once() -> None:
    """The hook keeps tensors; their storages are deduplicated when the block ends."""
    meter = MemoryMeter()
    x = torch.randn(4, 8, requires_grad=True)
    with meter.saving("n", "k", nn.Identity()):
        y = x * 2  # a scalar factor: nothing of x is saved
        y[:, :4].sin()  # saves a view of y
        y.cos()  # saves y itself
        y.t().tan()  # another view of y, and tan's result
        torch.randn(3, device="meta", requires_grad=True).sin()  # no storage to count
    assert meter.measure("n", {}) == 2 * (4 * 8) * F32


def test_an_error_inside_the_block_counts_nothing_and_removes_the_hook() -> None:
    meter = MemoryMeter()
    x = torch.randn(4, 8, requires_grad=True)
    with pytest.raises(ValueError), meter.saving("n", "k", nn.Identity()):
        x.sin()
        raise ValueError("boom")
    assert meter.pending() == 0
    with torch.autograd.graph.saved_tensors_hooks(lambda t: "packed", lambda p: x):  # raises if the meter's is left on top
        x.sin().sum().backward()


@pytest.mark.parametrize("model", ["vgg5", "mobilenet_v3_small"])
def test_own_storages_are_those_of_parameters_and_buffers(model: str) -> None:
    from itertools import chain

    from splitpipe.engine.memory import own_storages
    from splitpipe.models.zoo import build_model

    net = build_model(model, 3, 32, 10)
    shared = nn.Sequential(net, net[0])  # a submodule reached twice
    for module in (net, *net, shared):
        expected = {t.untyped_storage().data_ptr() for t in chain(module.parameters(), module.buffers())}
        assert own_storages(module) == expected
