"""End-to-end training on the embedded digits: accuracy, PipeLearn = SFL, FedAvg weights."""

import pytest
import torch
from torch import nn

from splitpipe.config import RunConfig
from splitpipe.engine.emulate import average_states
from splitpipe.experiment import emulate, prepare
from splitpipe.schedules import build_schedule
from splitpipe.schedules.ir import AGGREGATE


@pytest.mark.parametrize("technique", ["fl", "sl", "sfl", "pipelearn"])
def test_technique_trains_vgg5_on_digits_to_90_percent(technique: str) -> None:
    """The issue allows 10 epochs; 4 are enough on digits with batch 32."""
    config = RunConfig(technique=technique, devices=4, epochs=4, batch_size=32, progress=False)
    result = emulate(prepare(config))
    accuracies = [row["test_accuracy"] for row in result.report["epochs"]]
    assert len(accuracies) == 4
    assert accuracies[-1] >= 0.90, accuracies


def mlp() -> nn.Sequential:
    return nn.Sequential(
        nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU()),
        nn.Sequential(nn.Linear(32, 32), nn.ReLU()),
        nn.Linear(32, 10),
    )


def test_pipelearn_micro_batches_give_the_same_weights_as_sfl_whole_batches() -> None:
    base = RunConfig(devices=2, epochs=2, batch_size=20, micro_batches=3, split=2, progress=False,
                     network="wifi")
    torch.manual_seed(0)
    model = mlp()
    finals = {}
    for technique in ("sfl", "pipelearn"):
        finals[technique] = emulate(prepare(base.with_(technique=technique), model=model)).model
    sfl, pipe = finals["sfl"].state_dict(), finals["pipelearn"].state_dict()
    assert sfl.keys() == pipe.keys()
    moved = False
    initial = model.state_dict()
    for key in sfl:
        assert torch.allclose(sfl[key], pipe[key], atol=1e-5), key
        moved |= not torch.allclose(sfl[key], initial[key])
    assert moved, "training did not change the weights"


def test_fedavg_weights_are_sample_counts() -> None:
    config = RunConfig(technique="pipelearn", devices=3, partition="dirichlet", alpha=0.3, progress=False)
    plan = prepare(config).plan
    assert len(set(plan.shard_sizes)) > 1
    aggregates = [a for lanes in build_schedule(plan, 0).programs.values() for p in lanes.values()
                  for a in p if a.op == AGGREGATE]
    total = sum(plan.shard_sizes)
    for action in aggregates:
        assert action.weights == pytest.approx([n / total for n in plan.shard_sizes])


def test_average_states_weights_each_state_and_rounds_counters() -> None:
    a = {"w": torch.tensor([0.0, 4.0]), "n": torch.tensor(1)}
    b = {"w": torch.tensor([4.0, 8.0]), "n": torch.tensor(5)}
    out = average_states([a, b], [0.75, 0.25])
    assert torch.allclose(out["w"], torch.tensor([1.0, 5.0]))
    assert out["n"].item() == 2 and out["n"].dtype == torch.int64
