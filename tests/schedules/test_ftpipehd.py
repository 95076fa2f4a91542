"""FTPipeHD (its golden schedule: test_builders): 1F1B grids, same weights as one process, training, labels, bad cuts."""

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from splitpipe.config import RunConfig
from splitpipe.data import batches
from splitpipe.experiment import emulate, prepare
from splitpipe.network import PROFILES
from splitpipe.plan import Plan, stage_topology
from splitpipe.schedules.ftpipehd import one_f_one_b


def grid(stages: int, micro_batches: int) -> list[str]:
    return [" ".join(f"{op}{mb}" for op, mb in one_f_one_b(stages, s, micro_batches)) for s in range(stages)]


def test_one_f_one_b_grid() -> None:
    assert grid(3, 4) == [
        "F0 F1 F2 B0 F3 B1 B2 B3",
        "F0 F1 B0 F2 B1 F3 B2 B3",
        "F0 B0 F1 B1 F2 B2 F3 B3",
    ]


def test_one_f_one_b_with_fewer_micro_batches_than_stages() -> None:
    assert grid(4, 2) == ["F0 F1 B0 B1", "F0 F1 B0 B1", "F0 F1 B0 B1", "F0 B0 F1 B1"]
    assert grid(2, 1) == ["F0 B0", "F0 B0"]


def tiny_plan(stages: int = 3, samples: int = 4, batch: int = 4, micro_batches: int = 2) -> Plan:
    return Plan("ftpipehd", stage_topology([1.0] * stages, [PROFILES["wifi"]]), num_units=stages,
                cuts=tuple(range(1, stages)), batch_size=batch, micro_batches=micro_batches,
                shard_sizes=(samples,), owners=("central",), server="central",
                chain=tuple(f"worker{s}" for s in range(1, stages)))


def mlp() -> nn.Sequential:
    return nn.Sequential(
        nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU()),
        nn.Sequential(nn.Linear(32, 32), nn.ReLU()),
        nn.Sequential(nn.Linear(32, 24), nn.ReLU()),
        nn.Linear(24, 10),
    )


def single_process(model: nn.Sequential, config: RunConfig, x: torch.Tensor, y: torch.Tensor) -> nn.Sequential:
    """The whole model in one process: the same batches, the mean loss of each mini-batch."""
    model = copy.deepcopy(model)
    opt = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum,
                          weight_decay=config.weight_decay)
    for epoch in range(config.epochs):
        for batch in batches(np.arange(len(y)), config.batch_size, epoch, config.seed):
            index = torch.as_tensor(batch)
            opt.zero_grad()
            F.cross_entropy(model(x[index]), y[index]).backward()
            opt.step()
    return model


def test_weights_equal_single_process_training_without_batchnorm() -> None:
    config = RunConfig(technique="ftpipehd", stages=4, stage_speeds="1,0.5,0.2,0.1", cuts="1,2,3",
                       micro_batches=3, batch_size=20, epochs=2, lr=0.05, weight_decay=1e-3,
                       network="wifi", progress=False)
    torch.manual_seed(0)
    model = mlp()
    setup = prepare(config, model=model)
    reference = single_process(model, config, setup.dataset.x_train, setup.dataset.y_train).state_dict()
    final = emulate(setup).model.state_dict()
    assert final.keys() == reference.keys()
    for key in final:
        assert torch.allclose(final[key], reference[key], atol=1e-5), key
        assert not torch.allclose(final[key], model.state_dict()[key]), f"{key} did not train"


def test_trains_vgg5_on_digits_to_90_percent_with_10x_slower_stages() -> None:
    config = RunConfig(technique="ftpipehd", stages=4, stage_speeds="1,0.5,0.2,0.1", cuts="1,2,4",
                       micro_batches=4, batch_size=32, epochs=1, progress=False)
    result = emulate(prepare(config))
    row = result.report["epochs"][-1]
    assert row["test_accuracy"] >= 0.90, row["test_accuracy"]
    labels = {s.resource for s in result.spans if s.is_link and s.label.startswith("l")}
    assert labels == {"central->worker3"}  # straight to the last stage, never relayed
    assert set(row["memory_bytes"]) == {"central", "worker1", "worker2", "worker3"}


@pytest.mark.parametrize("changes, message", [
    ({"cuts": "1,2"}, "ftpipehd with 4 stages needs 3 cuts, got 2"),
    ({"cuts": "3,2,4"}, "cuts (3, 2, 4) not strictly increasing"),
    ({"cuts": "1,2,5"}, "cuts (1, 2, 5) out of range: each cut must be in 1..4"),
    ({"stages": 6}, "cannot cut a model of 5 units into 6 parts"),
    ({"stage_speeds": "1,0.5,0.2"}, "stage-speeds has 3 values for 4 stages"),
    ({"stages": 1}, "stages must be >= 2, got 1"),
])
def test_bad_cuts_give_one_line_errors(changes: dict, message: str) -> None:
    with pytest.raises(ValueError) as info:
        prepare(RunConfig(technique="ftpipehd", stages=4, progress=False).with_(**changes))
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_stages_follow_the_cuts_and_the_speeds() -> None:
    plan = prepare(RunConfig(technique="ftpipehd", cuts="2,4", progress=False)).plan
    assert plan.chain == ("worker1", "worker2") and plan.parts == 3
    with pytest.raises(ValueError, match="stage-speeds has 2 values for 3 stages"):
        prepare(RunConfig(technique="ftpipehd", cuts="2,4", stage_speeds="1,0.1", progress=False))
    plan = prepare(RunConfig(technique="ftpipehd", stage_speeds="1,0.5,0.1", progress=False)).plan
    assert [n.speed for n in plan.topology.nodes] == [1.0, 0.5, 0.1]
    assert plan.cuts == (1, 3)
