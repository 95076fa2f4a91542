"""MP-SL (its golden schedule: test_builders): labels never leave an owner, FIFO across owners, averaging, training, bad cuts."""

from dataclasses import replace

import numpy as np
import pytest
import torch

from splitpipe.cli import main
from splitpipe.config import RunConfig
from splitpipe.data import load_dataset
from splitpipe.engine.emulate import TensorExecutor
from splitpipe.engine.events import run_schedule
from splitpipe.engine.timing import ProfileTiming, part_units
from splitpipe.experiment import emulate, prepare
from splitpipe.network import PROFILES, LinkSpec, NetworkProfile
from splitpipe.plan import Plan, chain_topology
from splitpipe.profile import Profile, UnitCost
from splitpipe.schedules import build_schedule
from splitpipe.schedules.ir import AGGREGATE, SEND, Replica


def tiny_plan(owners: int = 2, compute: int = 1, shard_sizes: tuple[int, ...] = (2, 2), batch: int = 2,
              micro_batches: int = 1) -> Plan:
    topology = chain_topology(owners, [PROFILES["4g"]], [1.0], compute, 1.0, PROFILES["dc"])
    return Plan("mpsl", topology, num_units=compute + 2, cuts=tuple(range(1, compute + 2)), batch_size=batch,
                micro_batches=micro_batches, shard_sizes=shard_sizes,
                owners=tuple(f"device{i}" for i in range(owners)), server="aggregator", labels="owner",
                chain=tuple(f"compute{j}" for j in range(compute)))


def test_no_action_sends_a_label() -> None:
    schedule = build_schedule(tiny_plan(owners=3, compute=3, shard_sizes=(5, 4, 4), micro_batches=2), 0)
    sends = [a for _, _, a in schedule.actions() if a.op == SEND]
    assert {a.tag.kind for a in sends} == {"act", "grad", "weights", "avg"}


def test_parts_live_on_owners_and_chain() -> None:
    schedule = build_schedule(tiny_plan(owners=2, compute=2), 0)
    where = {(r.part, r.node) for r in schedule.replicas}
    assert where == {(0, "device0"), (0, "device1"), (3, "device0"), (3, "device1"),
                     (1, "compute0"), (2, "compute1")}
    assert sorted(r.replica for r in schedule.replicas if r.node == "compute0") == [0, 1]


def hand_profile(units: int) -> Profile:
    cost = UnitCost({2: 1.0}, {2: 2.0}, 0.0, 64, 0)
    return Profile("tiny", "cpu", 64, (cost,) * units, copy_s_per_byte=0.0)


def run_tiny(plan: Plan, epoch: int = 0):  # type: ignore[no-untyped-def]
    model = torch.nn.Sequential(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 16)),
                                *[torch.nn.Linear(16, 16) for _ in range(plan.num_units - 2)],
                                torch.nn.Linear(16, 10))
    speeds = {n.name: n.speed for n in plan.topology.nodes}
    timing = ProfileTiming({n: hand_profile(plan.num_units) for n in speeds}, speeds,
                           part_units(plan.num_units, plan.cuts))
    shards = np.array_split(np.arange(sum(plan.shard_sizes)), np.cumsum(plan.shard_sizes)[:-1])
    executor = TensorExecutor(model, plan, load_dataset("digits"), shards, timing)
    schedule = build_schedule(plan, epoch)
    executor.begin_epoch(epoch, schedule)
    spans = run_schedule(schedule, plan.topology, executor, epoch)
    executor.end_epoch()
    return executor, schedule, spans


def test_trace_moves_no_label_off_an_owner() -> None:
    executor, _, spans = run_tiny(tiny_plan(owners=3, compute=2, shard_sizes=(4, 4, 4)))
    links = [s for s in spans if s.is_link]
    assert {s.label[0] for s in links} == {"a", "g", "w"}  # act, grad, weights/avg; never "l"
    owner_links = [s for s in links if "device" in s.resource]
    assert owner_links and all(s.bytes > 8 * 2 for s in owner_links)


def test_compute_node_takes_the_task_that_arrived_first() -> None:
    """Owners 0, 1, 2 forward part 0 in 4, 2 and 1 s; the compute node needs 10 s per forward.
    It starts owner 2's at 1 s; at 11 s owners 0 and 1 both wait and owner 1's (arrived at 2 s)
    goes first, although lane 0 comes first in the program order."""
    fast = NetworkProfile("fast", LinkSpec(1e12, 0.0), LinkSpec(1e12, 0.0))
    topology = chain_topology(3, [fast], (0.25, 0.5, 1.0), 1, 0.1, PROFILES["dc"])
    plan = Plan(**{**tiny_plan(owners=3, shard_sizes=(2, 2, 2)).__dict__, "topology": topology})
    _, _, spans = run_tiny(plan)
    forwards = sorted((s.start, s.owner) for s in spans if s.resource == "compute0" and s.category == "forward")
    assert [lane for _, lane in forwards] == [2, 1, 0]
    assert [start for start, _ in forwards] == pytest.approx([1.0, 11.0, 21.0])


def test_an_owners_links_share_its_radio() -> None:
    """An owner sends to compute0 and the aggregator and hears from compute1 and the aggregator
    over one uplink and one downlink (the engine's test shows two transfers then take turns)."""
    topology = tiny_plan(owners=2, compute=2).topology
    assert topology.radios == {"device0", "device1"}
    assert topology.channel("device0", "compute0") == topology.channel("device0", "aggregator") == ("device0", "*")
    assert topology.channel("compute1", "device0") == topology.channel("aggregator", "device0") == ("*", "device0")
    assert topology.channel("compute0", "compute1") == ("compute0", "compute1")
    assert topology.channel("device1", "compute0") != topology.channel("device0", "compute0")
    assert tiny_plan(owners=2, compute=2).without_owners(["device1"])[0].topology.radios == {"device0"}
    with pytest.raises(ValueError, match=r"radios name unknown nodes \['phone'\]"):
        replace(topology, radios=frozenset({"phone"}))


def test_aggregation_averages_replicas_locally_and_owner_parts_at_the_aggregator() -> None:
    plan = tiny_plan(owners=3, compute=2, shard_sizes=(2, 4, 6))
    executor, schedule, spans = run_tiny(plan)
    for part in range(plan.parts):
        states = [executor.module(r).state_dict() for r in schedule.replicas if r.part == part]
        assert len(states) == 3
        for state in states[1:]:
            for key in state:
                assert torch.equal(state[key], states[0][key]), (part, key)
    aggregates = {(node, a.part): a.weights for node, _, a in schedule.actions() if a.op == AGGREGATE}
    expected = pytest.approx((2 / 12, 4 / 12, 6 / 12))
    assert aggregates == {("compute0", 1): expected, ("compute1", 2): expected,
                          ("aggregator", 0): expected, ("aggregator", 3): expected}
    assert not [s for s in spans if s.resource.startswith("compute") and "aggregator" in s.resource]
    assert Replica("compute0", 1, 2) in executor.replicas


def test_trains_vgg5_on_digits_to_90_percent() -> None:
    config = RunConfig(technique="mpsl", owners=3, cuts="1,3,4", micro_batches=1, epochs=2, batch_size=32,
                       lr=0.02, network="none", progress=False)
    setup = prepare(config)
    assert setup.plan.chain == ("compute0", "compute1")
    result = emulate(setup)
    accuracies = [row["test_accuracy"] for row in result.report["epochs"]]
    assert accuracies[-1] >= 0.90, accuracies
    assert not [s for s in result.spans if s.is_link and s.label.startswith("l")]


@pytest.mark.parametrize("changes, message", [
    ({"cuts": "3,2"}, "cuts (3, 2) not strictly increasing"),
    ({"cuts": "0,3"}, "cuts (0, 3) out of range: each cut must be in 1..4"),
    ({"cuts": "1,9"}, "out of range"),
    ({"cuts": "2"}, "mpsl needs at least 3 parts (owner, compute nodes, owner): give at least 2 cuts, got cuts (2,)"),
    ({"cuts": "1,2", "compute_nodes": 3}, "mpsl with 3 compute nodes needs 4 cuts (5 parts), got 2 cuts (1, 2)"),
    ({"compute_nodes": 4}, "cannot cut a model of 5 units into 6 parts"),
    ({"cuts": "1,x"}, "cuts must be a comma list of integers, got '1,x'"),
])
def test_bad_cuts_give_one_line_errors(changes: dict, message: str) -> None:
    with pytest.raises(ValueError) as info:
        prepare(RunConfig(technique="mpsl", progress=False).with_(**changes))
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_cli_reports_bad_cuts_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--technique", "mpsl", "--compute-nodes", "3", "--cuts", "1,2", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "needs 4 cuts" in err
