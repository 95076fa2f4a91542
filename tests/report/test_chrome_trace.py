"""trace.json of real emulated runs: one slice per span on its node's lane or link, epochs end to
end, plan changes as instant events, and the spans read back for the timeline."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from splitpipe.config import RunConfig
from splitpipe.experiment import RunResult, emulate, prepare
from splitpipe.loop import PlanChange
from splitpipe.report import write_run
from splitpipe.report.chrome_trace import EPOCHS_PID, read_spans, trace_events
from splitpipe.schedules import TECHNIQUES, technique
from splitpipe.span import CATEGORIES, Span

PROFILE = str(Path(__file__).parents[1] / "golden_reports" / "profile_vgg5_digits.json")
#: Big batches and 300 samples per owner: two steps per epoch (the second short), so the runs take seconds.
QUICK = dict(dataset="digits", devices=2, epochs=1, batch_size=256, micro_batches=2, timing="profile",
             profile=PROFILE, progress=False, samples_per_device=300)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[RunResult, dict[str, Any]]]:
    """technique -> (the emulated run, its trace.json as written by write_run)."""
    done = {}
    for name in TECHNIQUES:
        result = emulate(prepare(RunConfig(technique=name, **QUICK)))  # type: ignore[arg-type]
        out = tmp_path_factory.mktemp(name)
        write_run(out, result.report, result.spans)
        done[name] = (result, json.loads((out / "trace.json").read_text()))
    return done


def _slices(trace: dict[str, Any]) -> list[dict[str, Any]]:
    return [e for e in trace["traceEvents"] if e["ph"] == "X" and e["cat"] in CATEGORIES]


def _names(trace: dict[str, Any], kind: str) -> dict[tuple[int, int], str]:
    return {(e["pid"], e["tid"]): e["args"]["name"] for e in trace["traceEvents"] if e["name"] == kind}


@pytest.mark.parametrize("name", TECHNIQUES)
def test_every_span_is_one_slice_on_its_node_and_lane(name: str, runs: dict) -> None:
    result, trace = runs[name]
    slices = _slices(trace)
    assert len(slices) == len(result.spans) > 0
    processes = {pid: node for (pid, _), node in _names(trace, "process_name").items()}
    threads = _names(trace, "thread_name")
    assert set(processes.values()) == {"epochs", *result.report["roles"]}
    for event in slices:
        resource, lane = event["args"]["resource"], event["args"]["owner"]
        node, _, target = resource.partition("->")
        assert processes[event["pid"]] == node
        assert threads[(event["pid"], event["tid"])] == (f"-> {target}" if target else f"owner {lane}")
        assert event["dur"] >= 0 and {"category", "label", "bytes", "step", "micro_batch"} <= set(event["args"])


@pytest.mark.parametrize("name", TECHNIQUES)
def test_the_last_slice_ends_at_the_epoch_time(name: str, runs: dict) -> None:
    result, trace = runs[name]
    end = max(e["ts"] + e["dur"] for e in _slices(trace)) / 1e6
    assert math.isclose(end, result.report["epochs"][0]["time_s"], rel_tol=1e-9)
    (epoch,) = [e for e in trace["traceEvents"] if e.get("cat") == "epoch"]
    assert epoch["pid"] == EPOCHS_PID and math.isclose(epoch["dur"] / 1e6, end, rel_tol=1e-9)
    assert trace["otherData"]["technique"] == name


def test_spans_read_back_from_the_trace(runs: dict, tmp_path: Path) -> None:
    result, _ = runs["pipelearn"]
    write_run(tmp_path, result.report, result.spans)
    back = read_spans(tmp_path / "trace.json", result.report)
    assert len(back) == len(result.spans)
    for old, new in zip(result.spans, back):
        assert new.resource == old.resource and new.label == old.label and new.owner == old.owner
        assert math.isclose(new.start, old.start, abs_tol=1e-9) and math.isclose(new.end, old.end, abs_tol=1e-9)


def test_plan_changes_are_instant_events_after_the_earlier_epochs() -> None:
    setup = prepare(RunConfig(technique="sfl", **{**QUICK, "devices": 3, "epochs": 2, "batch_size": 64}))
    replan = technique("sfl").replan
    assert replan is not None

    def drop_device1(plan, segment, boundary):  # type: ignore[no-untyped-def]
        if segment.epoch == 1 and segment.stop == 2 and "device1" in plan.owners:
            new, owners = replan(plan, ["device1"])
            return PlanChange(new, "device1 dropped", owners)
        return None

    result = emulate(setup, segment_steps=2, controller=drop_device1)
    events = trace_events(result.report, result.spans)
    (instant,) = [e for e in events if e["ph"] == "i"]
    (logged,) = result.report["events"]
    first = result.report["epochs"][0]["time_s"]
    assert instant["name"] == "device1 dropped" and instant["s"] == "g"
    assert math.isclose(instant["ts"] / 1e6, first + logged["time_s"], rel_tol=1e-12)
    later = [e for e in events if e["ph"] == "X" and e["cat"] in CATEGORIES and e["args"]["epoch"] == 1]
    assert min(e["ts"] for e in later) / 1e6 >= first - 1e-9


def test_a_span_of_an_epoch_the_report_lacks_is_named() -> None:
    result = {"epochs": [{"epoch": 0, "time_s": 1.0}], "roles": {"server": "server"}}
    with pytest.raises(ValueError, match="epoch 3, which the report lacks"):
        trace_events(result, [Span("server", "forward", 0.0, 1.0, epoch=3)])
