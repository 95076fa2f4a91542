"""The emulator's driver: a prepared setup trained on the virtual clock through the run loop."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from splitpipe.engine.emulate import TensorExecutor
from splitpipe.engine.emulator import EmulatorEngine
from splitpipe.engine.predict import predict_epoch
from splitpipe.loop import Controller, run_loop
from splitpipe.setup import Setup, accelerated_nodes, make_timing, prepare, report_header, setup_profiles
from splitpipe.span import Span

__all__ = ["Setup", "prepare", "emulate", "RunResult"]

Progress = Callable[[int, dict[str, object]], None]


@dataclass
class RunResult:
    report: dict[str, object]
    spans: list[Span]
    model: nn.Sequential | None = None
    """The global model at the end (each part averaged as for evaluation)."""


def emulate(setup: Setup, progress: Progress | None = None, *, segment_steps: int | None = None,
            controller: Controller | None = None) -> RunResult:
    """Train for config.epochs on the virtual clock; one report entry per epoch.

    `segment_steps` and `controller` let the plan change every so many mini-batches (loop.py).
    """
    config = setup.config
    profiles = setup_profiles(setup)  # measured once: profile timing and the prediction share it
    timing = make_timing(setup, profiles)
    node_devices = {}
    if config.server_device != "cpu":
        node_devices = {n: torch.device(config.server_device) for n in accelerated_nodes(setup)}
    executor = TensorExecutor(
        setup.model, setup.plan, setup.dataset, setup.shards, timing,
        lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay,
        seed=config.seed, node_devices=node_devices,
    )
    engine = EmulatorEngine(executor, predict=lambda plan, epoch: predict_epoch(plan, profiles, epoch).time_s)
    result = run_loop(setup.plan, engine, range(config.epochs), segment_steps=segment_steps,
                      controller=controller, progress=progress)
    assert result.schedule is not None
    report = report_header(setup, timing.name) | {"epochs": result.rows}
    if result.events:
        report["events"] = result.events
    return RunResult(report, result.spans, executor.global_model(result.schedule))
