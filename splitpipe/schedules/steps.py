"""The mini-batches and micro-batches of one data owner in one segment of an epoch, as sizes."""

from __future__ import annotations

from collections.abc import Iterator

from splitpipe.plan import Plan, micro_batch_sizes, steps_per_epoch
from splitpipe.schedules.record import Segment

__all__ = ["owner_steps"]


def owner_steps(
    plan: Plan, owner: int, micro_batches: int | None = None, segment: Segment | None = None
) -> Iterator[tuple[int, list[int]]]:
    """(step, micro-batch sizes) for each mini-batch of owner `owner` in `segment` (default: the epoch).

    `micro_batches` defaults to the owner's own count (plan.owner_micro_batches).
    """
    samples = plan.shard_sizes[owner]
    n = plan.owner_micro_batches(owner) if micro_batches is None else micro_batches
    total = steps_per_epoch(samples, plan.batch_size)
    for step in (range(total) if segment is None else segment.steps(total)):
        yield step, micro_batch_sizes(samples, plan.batch_size, n, step)
