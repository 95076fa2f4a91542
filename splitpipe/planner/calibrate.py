"""Calibration: what running an action costs beyond the units' own time.

A profile times each unit alone. Running an action also costs the executor's own work: the
data gather of the first part, the loss of the last, Python dispatch, optimizer and
state-dict bookkeeping, the memory meter. For small models and micro-batches that is a
large share (tens of percent for VGG-5 at a few samples per micro-batch), part of it fixed
per action and part of it growing with the work. So: (1) train short PipeLearn runs of
the profiled model on this host with measured timing, split after the first unit, in the
middle and before the last, each with whole mini-batches, micro-batches of a quarter and of 2 samples, every epoch after
the first (a warm-up); (2) per kind of action, and per kind and place of the part (first: gathers the
data and needs no input gradient; last: computes the loss; middle), take the median measured
and profiled seconds of each (split, node, part, samples) group (robust to a busy machine);
(3) fit measured = profiled x (1 + ratio) + fixed through the medians, least squares in
relative error; (4) store it in Profile.calibration, which ProfileTiming (and so the
predictor) applies to every action of that kind and place, the fixed part scaled by node
speed like the rest. One fit per kind alone was 15-30% off for the first and last parts of
VGG-5 in opposite directions (docs/planner.md). The runs take turns epoch by epoch.
"""

from __future__ import annotations

import copy
import statistics
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import replace

import numpy as np
import torch
from torch import nn

from splitpipe.data import Dataset
from splitpipe.engine.emulate import TensorExecutor
from splitpipe.engine.emulator import EmulatorEngine
from splitpipe.engine.predict import node_profiles, profile_timing
from splitpipe.engine.timing import MeasuredTiming
from splitpipe.loop import run_loop
from splitpipe.network import PROFILES
from splitpipe.plan import Plan, star_topology
from splitpipe.profile import Profile
from splitpipe.schedules import DEFAULT
from splitpipe.schedules.ir import Action

__all__ = ["CalibrationRuns", "calibrate", "calibration_plan", "calibration_runs", "fit_calibration", "measure_run"]


class _Recorder(MeasuredTiming):
    def __init__(self, speeds: dict[str, float]) -> None:
        super().__init__(speeds)
        self.seen: list[tuple[str, Action, float]] = []

    def duration(self, node: str, action: Action, measured_s: float) -> float:
        self.seen.append((node, action, measured_s))
        return measured_s


Runs = list[tuple[Plan, list[tuple[str, Action, float]]]]


def calibrate(
    profile: Profile, model: nn.Sequential, dataset: Dataset, *, batch_size: int, steps: int = 2,
    epochs: int = 3, device: str = "cpu", clock: Callable[[], float] = time.perf_counter,
) -> Profile:
    """`profile` with Profile.calibration fitted on this host's `device` (model and dataset as profiled)."""
    if len(model) < 2:
        return profile
    runs = calibration_runs(model, dataset, batch_size=batch_size, steps=steps, epochs=epochs, device=device,
                            clock=clock)
    return fit_calibration(profile, runs)


def calibration_runs(
    model: nn.Sequential, dataset: Dataset, *, batch_size: int, steps: int = 2, epochs: int = 3,
    device: str = "cpu", clock: Callable[[], float] = time.perf_counter,
) -> Runs:
    """(1) Each short run's plan and its (node, action, measured seconds) after the warm-up epoch."""
    runs = CalibrationRuns(model, dataset, batch_size=batch_size, steps=steps, device=device, clock=clock)
    for _ in range(max(2, epochs)):
        runs.epoch()
    return runs.seen()


class CalibrationRuns:
    """The short runs of step (1), trained an epoch at a time, every run's epoch e before any run's e + 1.

    Taking turns, a slow or fast spell of the host hits every split and size alike (run one
    after another, each split met the host at its own moment, and the fit took that for a cost
    of the split). A caller may put other work between epochs (bench/planner.py puts its
    profile rounds and emulated epochs there, so that all of them meet the same host).
    """

    def __init__(self, model: nn.Sequential, dataset: Dataset, *, batch_size: int, steps: int = 2,
                 device: str = "cpu", clock: Callable[[], float] = time.perf_counter) -> None:
        n = len(model)
        self.runs = [_Run(calibration_plan(n, split, batch_size, micro_batches, steps), model, dataset, device, clock)
                     for split in sorted({1, n // 2, n - 1})  # small and large parts on either side
                     for micro_batches in sorted({1, max(1, batch_size // 4), max(1, batch_size // 2)})]
        self.epochs = 0

    def epoch(self) -> None:
        """One more epoch of every run (the first of them a warm-up that is not kept)."""
        for run in self.runs:
            run.epoch(self.epochs)
        self.epochs += 1

    def seen(self) -> Runs:
        return [(run.plan, list(run.seen)) for run in self.runs]


def fit_calibration(profile: Profile, runs: Runs) -> Profile:
    """(2)-(4): `profile` with the calibration that takes its units' times to the runs' measured ones."""
    bare = replace(profile, calibration={})
    groups: dict[str, dict[tuple[int, str, int, int], list[tuple[float, float]]]] = defaultdict(
        lambda: defaultdict(list))
    for plan, seen in runs:
        timing = profile_timing(plan, node_profiles(plan.topology, bare))
        for node, action, measured in seen:
            place = bare.place(plan.part_units()[action.part])
            for key in (action.op, f"{action.op}:{place}"):  # per op, and per op and place
                groups[key][(plan.cuts[0], node, action.part, action.samples)].append(
                    (timing.duration(node, action), measured))
    calibration = {}
    for op, by_key in sorted(groups.items()):
        points = [(statistics.median(p for p, _ in g), statistics.median(m for _, m in g)) for g in by_key.values()]
        calibration[op] = _fit(points)  # (2) (3)
    return replace(profile, calibration=calibration)  # (4)


def calibration_plan(num_units: int, split: int, batch_size: int, micro_batches: int, steps: int) -> Plan:
    """One short run's plan: one device at speed 1 split at `split`, an unshaped link, `steps` mini-batches."""
    return Plan(
        technique=DEFAULT, topology=star_topology(1, [PROFILES["none"]], [1.0], 1.0),
        num_units=num_units, cuts=(split,), batch_size=batch_size, micro_batches=micro_batches,
        shard_sizes=(steps * batch_size,), owners=("device0",),
    )


class _Run:
    """One short run, an epoch at a time; `seen` keeps (node, action, seconds) of every epoch but the first."""

    def __init__(self, plan: Plan, model: nn.Sequential, dataset: Dataset, device: str,
                 clock: Callable[[], float]) -> None:
        samples = sum(plan.shard_sizes)
        index = np.arange(samples) % len(dataset.y_train)
        shards = [index[: plan.shard_sizes[0]], index[plan.shard_sizes[0]:]]
        self.plan = plan
        self.recorder = _Recorder({n.name: 1.0 for n in plan.topology.nodes})
        on = {name: torch.device(device) for name in plan.topology.names}
        executor = TensorExecutor(copy.deepcopy(model), plan, dataset, shards, self.recorder, node_devices=on,
                                  clock=clock)
        self.engine = EmulatorEngine(executor, evaluate=False)
        self.seen: list[tuple[str, Action, float]] = []

    def epoch(self, epoch: int) -> None:
        self.recorder.seen.clear()
        run_loop(self.plan, self.engine, range(epoch, epoch + 1))
        if epoch > 0:  # the first epoch warms up
            self.seen += self.recorder.seen


def measure_run(plan: Plan, model: nn.Sequential, dataset: Dataset, epochs: int, device: str,
                clock: Callable[[], float]) -> list[tuple[str, Action, float]]:
    """(node, action, measured seconds) of every compute action of one run's epochs but the first."""
    run = _Run(plan, model, dataset, device, clock)
    for epoch in range(max(2, epochs)):
        run.epoch(epoch)
    return run.seen


def _fit(points: list[tuple[float, float]]) -> tuple[float, float]:
    """(fixed, ratio) so that measured ~ profiled x (1 + ratio) + fixed, least squares in
    *relative* error (a small part counts as much as a large one), fixed >= 0, ratio >= -0.5."""
    def solve(with_fixed: bool) -> tuple[float, float]:
        # minimise sum w (m - (1 + r) p - f)^2 with w = 1 / m^2
        w = [1.0 / max(m, 1e-9) ** 2 for _, m in points]
        sw = sum(w)
        swp = sum(wi * p for wi, (p, _) in zip(w, points))
        swpp = sum(wi * p * p for wi, (p, _) in zip(w, points))
        swm = sum(wi * m for wi, (_, m) in zip(w, points))
        swpm = sum(wi * p * m for wi, (p, m) in zip(w, points))
        det = swpp * sw - swp * swp
        if with_fixed and len(points) > 1 and det > 1e-12 * swpp * sw:
            scale = (swpm * sw - swp * swm) / det
            return (swm - scale * swp) / sw, scale - 1.0
        return 0.0, (swpm / swpp - 1.0) if swpp > 0 else 0.0

    fixed, ratio = solve(True)
    if fixed < 0:
        fixed, ratio = solve(False)
    if ratio < -0.5:
        ratio = -0.5
        fixed = max(0.0, statistics.median(m - 0.5 * p for p, m in points))
    return fixed, ratio
