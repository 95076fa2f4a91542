"""Fast epoch-time estimates for searches: predict a few steps, extrapolate to the epoch.

A data owner's steps repeat: after the first, each adds about the same time, because the
programs are the same per mini-batch and every owner loses the same number of full
mini-batches. So the epoch time is close to affine in the number of steps r::

    T(r) ~ T0 + r * slope,    slope = (T(r2) - T(r1)) / (r2 - r1)

(1) predict with every owner's shard cut by the same number of full mini-batches, keeping
its last (maybe partial) one and the aggregation, at r1 and r2 remaining steps; (2) extend
the line to the real step count. Epochs of at most `max_steps + 1` steps are predicted
exactly. The planner checks its final choice with a full prediction.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from splitpipe.engine.predict import predict_epoch
from splitpipe.plan import Plan, steps_per_epoch
from splitpipe.profile import Profile

__all__ = ["estimate_epoch_s"]


def estimate_epoch_s(plan: Plan, profiles: Mapping[str, Profile], *, epoch: int = 0, max_steps: int = 32) -> float:
    """Predicted epoch time of `plan`, extrapolated from `max_steps` steps when it has more."""
    steps = min(steps_per_epoch(n, plan.batch_size) for n in plan.shard_sizes)
    if max_steps < 2 or steps <= max_steps + 1:
        return predict_epoch(plan, profiles, epoch).time_s
    r1, r2 = max_steps // 2, max_steps
    t1, t2 = (predict_epoch(_fewer_steps(plan, steps - r), profiles, epoch).time_s for r in (r1, r2))  # (1)
    return t2 + (steps - r2) * (t2 - t1) / (r2 - r1)  # (2)


def _fewer_steps(plan: Plan, drop: int) -> Plan:
    """`plan` with `drop` full mini-batches taken from every owner's shard."""
    return replace(plan, shard_sizes=tuple(n - drop * plan.batch_size for n in plan.shard_sizes))
