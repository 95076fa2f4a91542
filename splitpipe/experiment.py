"""The emulator's driver: a prepared setup trained on the virtual clock through the run loop."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import torch
from torch import nn

from splitpipe.checkpoint import (
    Checkpoint,
    Checkpoints,
    check_resumable,
    restore,
    resumed_events,
    run_state,
    write_checkpoint,
)
from splitpipe.engine.carry import carry_over
from splitpipe.engine.emulate import TensorExecutor
from splitpipe.engine.emulator import EmulatorEngine
from splitpipe.engine.predict import predict_epoch
from splitpipe.engine.timing import SpeedChanges, Timing
from splitpipe.loop import Boundary, Controller, Faults, PlanChange, run_loop
from splitpipe.plan import Plan
from splitpipe.schedules import build_schedule
from splitpipe.schedules.record import Segment
from splitpipe.setup import Setup, accelerated_nodes, make_timing, prepare, report_header, setup_profiles
from splitpipe.span import Span

__all__ = ["Setup", "prepare", "emulate", "RunResult", "Checkpoints"]

Progress = Callable[[int, dict[str, object]], None]


@dataclass
class RunResult:
    report: dict[str, object]
    spans: list[Span]
    model: nn.Sequential | None = None
    """The global model at the end (each part averaged as for evaluation)."""


def emulate(setup: Setup, progress: Progress | None = None, *, segment_steps: int | None = None,
            controller: Controller | None = None, checkpoints: Checkpoints | None = None,
            resume: Checkpoint | None = None, timing: Timing | None = None) -> RunResult:
    """Train for config.epochs on the virtual clock; one report entry per epoch.

    `segment_steps` and `controller` let the plan change every so many mini-batches (loop.py);
    `checkpoints` saves the training state after epochs, `resume` goes on from one (the final
    weights then equal an uninterrupted run's exactly). `timing` replaces the config's compute
    durations (bench/kernel_links.py replays a real run's, to compare links alone).
    """
    config = setup.config
    profiles = setup_profiles(setup)  # measured once: profile timing and the prediction share it
    if setup.technique.add_costs is not None:  # what the technique's re-plan weighs
        setup = replace(setup, plan=setup.technique.add_costs(setup.plan, profiles))
    if resume is not None and resume.state["rows"]:  # a re-partition before the checkpoint: its cuts go on
        cuts = tuple(resume.state["rows"][-1].get("cuts") or setup.plan.cuts)
        if len(cuts) == len(setup.plan.cuts):
            setup = replace(setup, plan=replace(setup.plan, cuts=cuts))
    timing = make_timing(setup, profiles) if timing is None else timing
    node_devices = {}
    if config.server_device != "cpu":
        node_devices = {n: torch.device(config.server_device) for n in accelerated_nodes(setup)}
    executor = TensorExecutor(
        setup.model, setup.plan, setup.dataset, setup.shards, timing,
        lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay,
        seed=config.seed, node_devices=node_devices,
    )
    rows: list[dict[str, object]] = []
    events: list[dict[str, object]] = []
    first, dead = 0, []
    if resume is not None:
        check_resumable(resume, setup)
        dead = _without_dead(setup, executor, resume)
        executor.begin_segment(build_schedule(executor.plan, resume.epoch + 1))
        restore(resume, executor.replicas)
        rows, first, events = list(resume.state["rows"]), resume.epoch + 1, resumed_events(resume)

    def after_epoch(epoch: int, row: dict[str, object]) -> None:
        rows.append(row)
        if checkpoints is not None and checkpoints.due(epoch, config.epochs):
            gone = [n for n in setup.topology.names if n not in executor.plan.topology.names]
            write_checkpoint(checkpoints.out, epoch, executor.replicas, run_state(setup, rows, events) | {"dead": gone},
                             checkpoints.keep)
        if progress is not None:
            progress(epoch, row)

    engine = EmulatorEngine(executor, predict=lambda plan, epoch: predict_epoch(plan, profiles, epoch).time_s)
    faults = Faults(config.fail_times(), config.rejoin_times(), config.round_deadline, dead=tuple(dead))
    controllers = [controller] if controller is not None else []
    adapt = setup.technique.adapt(setup.plan, config) if setup.technique.adapt else None
    if adapt is not None:  # the technique's own controller (FTPipeHD's re-partition)
        controllers.append(adapt[0])  # type: ignore[arg-type]
        segment_steps = segment_steps or adapt[1]
    if config.speed_changes():  # takes effect at a step boundary: one step per segment
        controllers.insert(0, SpeedChanges(timing, config.speed_changes()))  # type: ignore[arg-type]
        segment_steps = 1
    result = run_loop(setup.plan, engine, range(first, config.epochs), segment_steps=segment_steps,
                      controller=_first_change(controllers) if controllers else None, progress=after_epoch,
                      faults=faults, events=events)
    schedule = result.schedule or build_schedule(setup.plan, max(0, config.epochs - 1))
    report = report_header(setup, timing.name) | {"epochs": rows}
    if result.events:
        report["events"] = result.events
    return RunResult(report, result.spans, executor.global_model(schedule))


def _without_dead(setup: Setup, executor: TensorExecutor, checkpoint: Checkpoint) -> list[str]:
    """The nodes dead when `checkpoint` was written; `executor` takes the plan without them (its replicas)."""
    dead = [str(n) for n in checkpoint.state.get("dead", [])]
    if dead:
        if setup.technique.replan is None:
            raise ValueError(f"{checkpoint.path / 'state.json'} says {', '.join(dead)} died: "
                             f"{setup.plan.technique} cannot go on without them")
        plan, _ = setup.technique.replan(setup.plan, sorted(dead))
        owners = {i: plan.owners.index(n) for i, n in enumerate(setup.plan.owners) if n in plan.owners}
        shards = [setup.shards[setup.plan.owners.index(n)] for n in plan.owners]
        carry_over(executor, plan, owners, (), shards, dead)
    return dead


def _first_change(controllers: list[Controller]) -> Controller:
    """Every controller sees every boundary; the first plan change asked for is made."""
    def ask(plan: Plan, segment: Segment, boundary: Boundary) -> PlanChange | None:
        changes = [c(plan, segment, boundary) for c in controllers]
        return next((c for c in changes if c is not None), None)
    return ask

