"""FTPipeHD's re-partition: capacity measured from the actions' times, the DP re-run on it, layers
moved over the links with their momentum, and the sync pipeline's weights unchanged by any of it."""

from dataclasses import replace
from pathlib import Path

import pytest
import torch

from splitpipe.config import RunConfig
from splitpipe.engine.emulate import TensorExecutor
from splitpipe.engine.move import run_moves
from splitpipe.engine.timing import MeasuredTiming
from splitpipe.experiment import RunResult, emulate, prepare
from splitpipe.schedules import build_schedule
from splitpipe.schedules.ftpipehd_repartition import measured_speeds, moves
from splitpipe.schedules.ftpipehd_replan import dp_cuts
from splitpipe.schedules.ir import Replica
from splitpipe.span import Span

from .conftest import ftpipehd

PROFILE = str(Path(__file__).parents[1] / "golden_reports" / "profile_vgg5_digits.json")
#: 10 mini-batches an epoch; checks every 5.
BASE = dict(technique="ftpipehd", dataset="digits", stages=3, batch_size=16, micro_batches=2, epochs=2,
            samples_per_device=160, progress=False, timing="profile", profile=PROFILE, network=("lan",),
            replicate_every=0, replicate_central_every=0, repartition_every=5)


def _run(**changes: object) -> RunResult:
    return emulate(prepare(RunConfig(**{**BASE, **changes})))  # type: ignore[arg-type]


def _same_weights(a: RunResult, b: RunResult) -> None:
    assert a.model is not None and b.model is not None
    for (key, x), y in zip(a.model.state_dict().items(), b.model.state_dict().values()):
        assert torch.equal(x, y), key


def test_speeds_are_measured_from_the_stages_own_spans() -> None:
    plan = replace(ftpipehd(stages=3), extra={"unit_s": (1.0, 2.0, 4.0), "stage_s": 1.0})
    spans = [Span("central", "forward", 0, 1), Span("central", "step", 1, 2),  # 2 s for 1 + 1: speed 1
             Span("worker1", "backward", 0, 6), Span("worker1", "step", 6, 6),  # 6 s for 2 + 1: 0.5
             Span("worker2", "forward", 0, 0.5), Span("worker2", "step", 0.5, 0.5)]  # 0.5 s for 4 + 1: 10
    assert measured_speeds(plan, spans) == [1.0, 0.5, 10.0]
    assert measured_speeds(plan, spans[:4]) is None  # worker2 has not stepped yet


def test_moves_follow_the_chain_from_old_to_new_stage() -> None:
    old = replace(ftpipehd(stages=3), num_units=6, cuts=(1, 2))
    got = moves(old, replace(old, cuts=(3, 5)))  # unit 1: worker1 -> central, 2: worker2 -> central, 3, 4: -> worker1
    assert {(m.path, m.units) for m in got} == {
        (("worker1", "central"), (1,)), (("worker2", "worker1", "central"), (2,)), (("worker2", "worker1"), (3, 4))}
    assert moves(old, replace(old, cuts=(3, 5)), lost=("worker2",)) == [got[0]]  # a dead node's units: copies


def test_moved_layers_travel_with_their_momentum_on_the_links() -> None:
    setup = prepare(RunConfig(**{**BASE, "cuts": "1,2"}))  # type: ignore[arg-type]
    plan = setup.plan
    executor = TensorExecutor(setup.model, plan, setup.dataset, setup.shards, MeasuredTiming({}))
    executor.begin_segment(build_schedule(plan, 0))
    for module, optimizer in executor.replicas.values():  # one step, so that momentum exists
        for p in module.parameters():
            p.grad = torch.ones_like(p)
        optimizer.step()
    (move,) = todo = moves(plan, replace(plan, cuts=(1, 3)))  # unit 2: worker2 -> worker1
    spans, arrived = run_moves(todo, plan.topology, executor)
    assert move.path == ("worker2", "worker1") and move.units == (2,) and arrived.keys() == {"worker1"}
    state = arrived["worker1"]
    module, optimizer = executor.replicas[Replica("worker2", 2, 0)]
    weights = {k: v for k, v in module.state_dict().items() if k.startswith("2.")}  # units 3, 4 stay
    assert state.keys() == set(weights) | {f"momentum.{k}" for k, _ in module.named_parameters() if k in weights}
    assert all(torch.equal(state[k], v) for k, v in weights.items())
    (span,) = spans
    assert span.resource == "worker2->worker1" and span.bytes == sum(v.numel() * v.element_size() for v in state.values())
    assert span.duration == pytest.approx(plan.topology.link("worker2", "worker1").transfer_s(span.bytes))


@pytest.fixture(scope="module")
def static() -> RunResult:
    return _run(repartition_every=0)


def test_a_check_that_keeps_the_cuts_leaves_the_weights_as_without_it(static: RunResult) -> None:
    plan = prepare(RunConfig(**BASE)).plan  # type: ignore[arg-type]
    best = ",".join(map(str, _dp_cuts(RunConfig(**BASE))))  # type: ignore[arg-type]
    kept = _run(cuts=best)
    assert "events" not in kept.report and [r["cuts"] for r in kept.report["epochs"]] == [list(map(int, best.split(",")))] * 2  # type: ignore[index]
    _same_weights(kept, _run(cuts=best, repartition_every=0))
    assert plan.cuts != tuple(map(int, best.split(",")))  # so the next test moves layers


def test_a_repartition_moves_layers_and_leaves_the_sync_weights_unchanged(static: RunResult) -> None:
    moved = _run()
    (event,) = moved.report["events"]  # type: ignore[misc]
    assert event["event"] == "repartition" and event["step"] == 5 and event["capacity"] == [1.0, 1.0, 1.0]
    assert event["cuts_after"] == list(_dp_cuts(RunConfig(**BASE)))  # type: ignore[arg-type]
    assert event["gain_s"] > event["move_s"] > 0
    assert [s for s in moved.spans if s.category == "aggregate" and s.is_link]  # the move, on a link
    _same_weights(moved, static)  # weights and momentum carried: the same training


def test_after_a_speed_change_the_cuts_move_to_the_dps_optimum_for_the_new_speeds() -> None:
    report = _run(speed_change=("worker2@0=0.05",), cuts="1,2", epochs=1, repartition_every=4).report
    events = report["events"]
    assert events and events[0]["capacity"] == pytest.approx([1.0, 1.0, 0.05], rel=1e-6)  # type: ignore[index]
    config = RunConfig(**{**BASE, "stage_speeds": (1, 1, 0.05)})  # type: ignore[arg-type]
    assert report["epochs"][-1]["cuts"] == list(_dp_cuts(config))  # type: ignore[index]


def _dp_cuts(config: RunConfig) -> tuple[int, ...]:
    """The DP's optimum for `config`'s declared speeds, on the run's profile."""
    from splitpipe.schedules.ftpipehd_replan import add_costs
    from splitpipe.setup import setup_profiles

    setup = prepare(config)
    return dp_cuts(add_costs(setup.plan, setup_profiles(setup)))


def test_a_speed_change_names_a_node_of_the_plan() -> None:
    with pytest.raises(ValueError, match="speed-change names worker9, not a node of this plan"):
        prepare(RunConfig(**{**BASE, "speed_change": ("worker9@1=0.5",)}))  # type: ignore[arg-type]


def test_a_failure_between_re_partitions_is_survived(static: RunResult) -> None:
    epoch_s = static.report["epochs"][0]["time_s"]  # type: ignore[index]
    report = _run(stages=4, fail=(f"worker2@{0.7 * epoch_s}",), replicate_every=2, replicate_central_every=4,
                  speed_change=("worker3@0=0.2",)).report
    kinds = [e["event"] for e in report["events"]]  # type: ignore[union-attr]
    assert "failure" in kinds and kinds.count("repartition") >= 1
    failure = report["events"][kinds.index("failure")]  # type: ignore[index]
    assert 0 < failure["lost_steps"] <= 5  # redone from the segment's start (a check every 5)
    after = failure["cuts_after"]
    assert len(after) == 2 and len(report["epochs"][-1]["cuts"]) == 2  # type: ignore[index]
