"""sfl --servers M: MP-SL's horizontally scaled SFL (owners split among M servers, FedAvg across them)."""

from pathlib import Path

import pytest
import torch

from splitpipe.cli import main
from splitpipe.config import RunConfig
from splitpipe.engine.predict import node_profiles, predict_epoch
from splitpipe.experiment import emulate, prepare
from splitpipe.profile import Profile
from splitpipe.schedules import build_schedule
from splitpipe.schedules.star import owner_server

GOLDEN_PROFILE = Path(__file__).parents[1] / "golden_reports" / "profile_vgg5_digits.json"


def test_one_server_is_sfl() -> None:
    base = RunConfig(technique="sfl", devices=3, progress=False)
    one, plain = prepare(base.with_(servers=1)).plan, prepare(base).plan
    assert one == plain
    assert build_schedule(one, 0).dump() == build_schedule(plain, 0).dump()


def test_owners_go_round_robin_and_servers_link_at_datacentre_speed() -> None:
    plan = prepare(RunConfig(technique="sfl", devices=5, servers=3, progress=False)).plan
    assert [owner_server(plan, i) for i in range(5)] == ["server", "server1", "server2", "server", "server1"]
    assert plan.topology.link("server1", "server").bandwidth_Bps == pytest.approx(7000e6 / 8)
    roles = [n.role for n in plan.topology.nodes]
    assert roles.count("server") == 3


def test_more_servers_share_the_server_work() -> None:
    """A slow server is the bottleneck of SFL: two of them finish an epoch sooner."""
    profile = Profile.load(GOLDEN_PROFILE)
    base = RunConfig(technique="sfl", devices=4, network="dc", device_speed=10.0, server_speed=0.5, progress=False)
    times = []
    for servers in (1, 2):
        plan = prepare(base.with_(servers=servers)).plan
        times.append(predict_epoch(plan, node_profiles(plan.topology, profile)).time_s)
    assert times[1] < times[0]


def test_two_servers_train_digits_to_90_percent() -> None:
    config = RunConfig(technique="sfl", devices=4, servers=2, epochs=4, batch_size=32, progress=False)
    assert emulate(prepare(config)).report["epochs"][-1]["test_accuracy"] >= 0.90


def test_two_servers_end_with_sfl_weights() -> None:
    """Each owner's server replica trains alone within an epoch, so the average is SFL's."""
    base = RunConfig(technique="sfl", dataset="synthetic:train_size=48,test_size=8", devices=3, epochs=1,
                     batch_size=8, progress=False)
    one, two = (emulate(prepare(base.with_(servers=m))).model.state_dict() for m in (1, 2))
    assert all(torch.allclose(one[k], v, atol=1e-6) for k, v in two.items())


def test_bad_server_counts_are_named() -> None:
    with pytest.raises(ValueError, match="servers 5 out of range: must be in 1..4"):
        prepare(RunConfig(technique="sfl", devices=4, servers=5, progress=False))
    with pytest.raises(ValueError, match="servers applies to sfl, not pipelearn"):
        prepare(RunConfig(technique="pipelearn", devices=4, servers=2, progress=False))


def test_compare_runs_sfl_on_two_servers_beside_sfl(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["compare", "--techniques", "sfl,sfl:servers=2", "--epochs", "1", "--devices", "2", "--batch-size", "8",
                 "--dataset", "synthetic:train_size=32,test_size=8,image_size=8", "--no-progress"])
    assert code == 0
    assert "sfl:servers=2" in capsys.readouterr().out
    assert main(["compare", "--techniques", "sfl:servers", "--no-progress"]) == 2
