"""The public API in five calls: a config in; a trained run, a prediction, a plan or a real cluster out."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch import nn

    from splitpipe.config import RunConfig
    from splitpipe.engine.predict import Prediction
    from splitpipe.experiment import RunResult
    from splitpipe.planner import PlanResult

__all__ = ["run", "predict", "choose_plan", "launch"]

Progress = Callable[[int, dict[str, object]], None]


def run(config: RunConfig, model: nn.Sequential | None = None, progress: Progress | None = None) -> RunResult:
    """Train `config` on the emulator (virtual clock, real tensors); `model` replaces the zoo model."""
    from splitpipe.experiment import emulate
    from splitpipe.setup import prepare

    return emulate(prepare(config, model), progress)


def predict(config: RunConfig, model: nn.Sequential | None = None, epoch: int = 0) -> Prediction:
    """Predict one epoch of `config` from profiles (config.profile, or this host measured), no training."""
    from splitpipe.engine.predict import predict_epoch
    from splitpipe.setup import prepare, setup_profiles

    setup = prepare(config, model)
    return predict_epoch(setup.plan, setup_profiles(setup), epoch)


def choose_plan(config: RunConfig, model: nn.Sequential | None = None, **options: Any) -> PlanResult:
    """Choose the fastest split, micro-batches or cuts for `config`'s technique (planner.plan_for's options)."""
    from splitpipe.planner import micro_batch_choices, plan_for
    from splitpipe.setup import prepare, setup_profiles

    setup = prepare(config, model)
    batch = setup.plan.batch_size
    sizes = {batch} | {-(-batch // n) for n in options.get("micro_batches") or micro_batch_choices(batch)}
    return plan_for(setup.plan, setup_profiles(setup, sorted(sizes)), cuts=config.cut_points(), **options)


def launch(config: RunConfig, **options: Any) -> None:
    """Run `config` for real: one process per node on this machine over loopback gRPC (runtime/launcher.py)."""
    from splitpipe.runtime.launcher import launch as launch_cluster

    launch_cluster(config, **options)
