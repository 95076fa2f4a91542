"""A part with no parameters (a lone max-pool of VGG-19's 25 layers) trains and steps."""

from splitpipe.config import RunConfig
from splitpipe.experiment import emulate, prepare


def test_a_compute_node_holding_only_a_max_pool_runs_an_epoch() -> None:
    config = RunConfig(technique="mpsl", model="vgg19", dataset="synthetic:train_size=16,test_size=4,image_size=8",
                       devices=2, batch_size=8, epochs=1, cuts=(2, 3, 24), progress=False)
    setup = prepare(config)
    assert not list(setup.model[2].parameters())
    result = emulate(setup)
    assert len(result.report["epochs"]) == 1
