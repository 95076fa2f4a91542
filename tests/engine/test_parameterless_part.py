"""A part with no parameters (a lone max-pool, as among VGG-19's 25 layers) trains and steps."""

from torch import nn

from splitpipe.config import RunConfig
from splitpipe.experiment import emulate, prepare


def test_a_compute_node_holding_only_a_max_pool_runs_an_epoch() -> None:
    model = nn.Sequential(
        nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU()),
        nn.MaxPool2d(2),
        nn.Sequential(nn.Flatten(), nn.Linear(4 * 4 * 4, 10)),
    )
    config = RunConfig(technique="mpsl", dataset="synthetic:channels=1,image_size=8,train_size=16,test_size=4",
                       devices=2, batch_size=8, epochs=1, cuts=(1, 2), progress=False)
    result = emulate(prepare(config, model=model))
    assert len(result.report["epochs"]) == 1
