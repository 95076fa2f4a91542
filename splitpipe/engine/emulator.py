"""The emulator as an engine of the run loop: programs on the virtual clock, real tensors."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

import torch

from splitpipe.engine.carry import carry_over
from splitpipe.engine.emulate import TensorExecutor
from splitpipe.engine.events import run_schedule
from splitpipe.engine.mark import Mark
from splitpipe.engine.move import run_moves
from splitpipe.engine.timing import ProfileTiming
from splitpipe.plan import Plan
from splitpipe.schedules import Segment, build_schedule, technique
from splitpipe.schedules.ir import AGGREGATE, Schedule
from splitpipe.span import Span

__all__ = ["EmulatorEngine"]


class EmulatorEngine:
    """Runs each segment with `executor` on the event engine's virtual clock.

    `evaluate`: test accuracy of the global model after each epoch. `predict(plan, epoch)`:
    the predictor's epoch time, reported beside the emulated one.
    """

    def __init__(self, executor: TensorExecutor, *, evaluate: bool = True,
                 predict: Callable[[Plan, int], float] | None = None) -> None:
        self.executor = executor
        self.evaluate = evaluate
        self.predict = predict
        self.wall_s = 0.0
        self.shards = dict(zip(executor.plan.owners, executor.shards))  # every owner's, by name
        self.saved: Mark | None = None
        self.aggregated: dict[str, torch.Tensor] = {}  # the global model of the last aggregation

    def run_segment(self, plan: Plan, schedule: Schedule, segment: Segment,
                    failures: Mapping[str, float] | None = None) -> list[Span]:
        if segment.start == 0:
            self.executor.begin_epoch(segment.epoch, schedule)
            self.wall_s = 0.0
        else:
            self.executor.begin_segment(schedule)
        wall = time.perf_counter()
        try:
            return run_schedule(schedule, plan.topology, self.executor, segment.epoch, failures=failures)
        finally:
            self.wall_s += time.perf_counter() - wall

    def finish_epoch(self, plan: Plan, schedule: Schedule, epoch: int) -> dict[str, object]:
        executor = self.executor
        row: dict[str, object] = {"train_loss": executor.end_epoch()}
        if self.evaluate:
            row["test_accuracy"] = executor.evaluate(schedule)
        if any(a.op == AGGREGATE for _, _, a in schedule.actions()):  # where lost layers come back from
            self.aggregated = executor.global_model(schedule).state_dict()
        row["wall_s"] = self.wall_s
        row["compute_wall_s"] = executor.compute_wall_s
        if self.predict is not None:
            row["predicted_time_s"] = self.predict(plan, epoch)
        row["memory_bytes"] = executor.memory_peaks()
        if any(d.type == "cuda" for d in executor.node_devices.values()):
            row["cuda_memory_bytes"] = executor.cuda_peaks()
        return row

    def adopt(self, old: Plan, new: Plan, owners: Mapping[int, int]) -> list[Span]:
        """Units that change node travel over the links first (engine/move.py), then every
        replica of `new` is built from the nearest copy (engine/carry.py)."""
        shards = [self.shards[name] for name in new.owners]
        lost = set(old.topology.names) - set(new.topology.names)  # a dropped node's state is gone with it
        record = technique(new.technique)
        spans: list[Span] = []
        if record.moves is not None:
            spans, _ = run_moves(record.moves(old, new, lost), new.topology, self.executor)
        carry_over(self.executor, new, owners, build_schedule(new, 0).replicas, shards, lost, self.aggregated)
        if isinstance(self.executor.timing, ProfileTiming):  # a part's units are the new plan's
            self.executor.timing.parts = new.part_units()
        return spans

    def mark(self) -> None:
        self.saved = Mark.take(self.executor)

    def rewind(self) -> None:
        """Back to the mark: weights, optimizer state, data position and loss of the segment's start.

        What the segment computed is lost (its time stays on the clock); messages in flight and
        forwards awaiting their backward are dropped.
        """
        if self.saved is None:
            raise RuntimeError("rewind without a mark of the current plan")
        self.saved.restore(self.executor)
