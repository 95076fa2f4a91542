"""FTPipeHD's fault tolerance: recovery copies travel on the right links, and a run that loses
one or two workers (adjacent or not) re-plans over the survivors and still learns."""

from dataclasses import replace
from pathlib import Path

import pytest

from splitpipe.config import RunConfig
from splitpipe.experiment import emulate, prepare
from splitpipe.models import split_model
from splitpipe.schedules import build_schedule, technique
from splitpipe.schedules.ir import SEND

from .conftest import ftpipehd

PROFILE = str(Path(__file__).parents[1] / "golden_reports" / "profile_vgg5_digits.json")
BASE = dict(technique="ftpipehd", dataset="digits", stages=4, batch_size=32, micro_batches=4, epochs=2,
            progress=False, timing="profile", profile=PROFILE, replicate_every=10, replicate_central_every=20,
            repartition_every=0)  # failures alone (a re-partition on top: test_ftpipehd_repartition)


def _sends(plan_extra: dict[str, int]) -> list[tuple[str, str, int]]:
    plan = replace(ftpipehd(stages=3, samples=8, batch=4), extra=plan_extra)
    schedule = build_schedule(plan, 0)
    return [(node, a.peer, a.tag.part) for node, _, a in schedule.actions()
            if a.op == SEND and a.tag is not None and a.tag.kind == "backup"]


def test_each_stage_copies_to_the_next_and_workers_to_central() -> None:
    """Two iterations; copies to the next stage after each, to central after the second."""
    sends = _sends({"replicate_every": 1, "replicate_central_every": 2})
    next_stage = [("central", "worker1", 0), ("worker1", "worker2", 1), ("worker2", "central", 2)]
    assert sorted(sends) == sorted(2 * next_stage + [("worker1", "central", 1)])
    assert _sends({"replicate_every": 0, "replicate_central_every": 0}) == []


def test_replication_bytes_are_the_parts_weights_on_their_links() -> None:
    config = RunConfig(**{**BASE, "epochs": 1, "batch_size": 64, "replicate_every": 5,  # type: ignore[arg-type]
                          "replicate_central_every": 0})
    setup = prepare(config)
    copies = emulate(setup).report["epochs"][0]["bytes"]
    plain = emulate(prepare(config.with_(replicate_every=0))).report["epochs"][0]["bytes"]
    parts = split_model(setup.model, setup.plan.cuts)
    weights = [sum(t.numel() * t.element_size() for t in part.state_dict().values()) for part in parts]
    times = 23 // 5  # 1437 samples in mini-batches of 64: iterations 5, 10, 15, 20
    nodes = ["central", "worker1", "worker2", "worker3"]
    for s, (a, b) in enumerate(zip(nodes, [*nodes[1:], "central"])):
        assert copies[f"{a}->{b}"] - plain.get(f"{a}->{b}", 0) == times * weights[s], (a, b)


def test_the_central_node_cannot_be_dropped() -> None:
    with pytest.raises(RuntimeError, match="central .the central node, with the data. failed: ftpipehd cannot go on without it"):
        emulate(prepare(RunConfig(**{**BASE, "epochs": 1, "fail": ("central@1",)})))  # type: ignore[arg-type]


def test_the_replan_runs_the_dp_over_the_survivors() -> None:
    plan = prepare(RunConfig(**{**BASE, "stage_speeds": (1, 1, 0.1, 1)})).plan  # type: ignore[arg-type]
    new, owners = technique("ftpipehd").replan(plan, ["worker2"])  # type: ignore[misc]
    assert new.chain == ("worker1", "worker3") and owners == {0: 0} and len(new.cuts) == 2
    assert ("worker1", "worker3") in new.topology.links and ("worker3", "worker1") in new.topology.links
    assert new.topology.link("worker1", "worker3") == plan.topology.link("worker2", "worker3")


@pytest.fixture(scope="module")
def clean() -> dict[str, object]:
    return emulate(prepare(RunConfig(**BASE))).report  # type: ignore[arg-type]


@pytest.mark.parametrize("fails", [(("worker2", 0.6),), (("worker1", 0.4), ("worker3", 1.3)),
                                   (("worker1", 0.4), ("worker2", 0.9))], ids=["one", "two-apart", "two-adjacent"])
def test_failed_workers_are_survived(clean: dict[str, object], fails: tuple[tuple[str, float], ...]) -> None:
    epoch_s = clean["epochs"][0]["time_s"]  # type: ignore[index]
    fail = tuple(f"{node}@{at * epoch_s}" for node, at in fails)
    report = emulate(prepare(RunConfig(**{**BASE, "fail": fail}))).report  # type: ignore[arg-type]
    events = report["events"]  # a failure, then the recovery once its layers are rebuilt
    assert [(e["event"], e["nodes"]) for e in events] == [
        (kind, [node]) for node, _ in fails for kind in ("failure", "recovery")]
    assert [len(e["cuts_after"]) for e in events[1::2]] == [2 - i for i in range(len(fails))]
    assert report["epochs"][-1]["cuts"] == events[-1]["cuts_after"]  # type: ignore[index]
    final, reference = report["epochs"][-1]["test_accuracy"], clean["epochs"][-1]["test_accuracy"]  # type: ignore[index]
    assert final >= 0.9 and final >= reference - 0.02
