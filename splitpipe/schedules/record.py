"""The record that says everything about one technique, so nothing else branches on its name.

Each technique module ends with one `TECHNIQUE = Technique(...)`; `registry.py` lists them.
A caller asks the record: how to make a plan from a config, how to build a segment's
programs, which roles its nodes play, what the planner may choose, how it re-plans.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from splitpipe.schedules.ir import Schedule

if TYPE_CHECKING:
    import numpy as np

    from splitpipe.config import RunConfig
    from splitpipe.plan import Plan
    from splitpipe.profile import Profile

__all__ = ["Technique", "PlannerHook", "Segment", "Move", "drop_owners"]


@dataclass(frozen=True)
class Segment:
    """The part of an epoch one schedule covers: mini-batch steps [start, stop) of every owner.

    A run is cut into segments where its plan may change (a re-partition, a dropped node);
    a whole epoch is one segment. Aggregation (FedAvg) runs only in the segment that ends
    the epoch.
    """

    epoch: int
    start: int = 0
    stop: int | None = None
    """None: to the end of the epoch."""

    def __post_init__(self) -> None:
        if self.epoch < 0 or self.start < 0 or (self.stop is not None and self.stop <= self.start):
            raise ValueError(f"bad segment: epoch {self.epoch}, steps {self.start}..{self.stop}")

    @property
    def ends_epoch(self) -> bool:
        return self.stop is None

    def steps(self, total: int) -> range:
        """The steps of an owner with `total` steps per epoch that fall in this segment."""
        return range(min(self.start, total), total if self.stop is None else min(self.stop, total))

    def aggregates(self, plan: Plan) -> bool:
        """Whether this segment ends with the plan's aggregation round."""
        return self.ends_epoch and plan.aggregates_after(self.epoch)



@dataclass(frozen=True)
class PlannerHook:
    """What `splitpipe plan` may choose for a technique, by strategy (planner/choose.py).

    `strategy`: "split" (a search over cut points and micro-batch counts), "cuts-ilp" (MP-SL's
    ILP for the compute nodes' cuts under memory limits) or "stages-dp" (FTPipeHD's min-max
    programme over stage capacity). `memory_roles`: the roles `--memory-limit` applies to.
    `methods`: how `--method` may choose, the first the default ("search" over predictions,
    "paper": the paper's own rule). `estimators`: what `--estimator` may show for the chosen
    plan, the first the default ("events": the event predictor; "closed-form": the paper's
    cost model beside it).
    """

    strategy: str
    micro_batches: bool = False
    per_device: bool = False
    memory_roles: tuple[str, ...] = ()
    methods: tuple[str, ...] = ("search",)
    estimators: tuple[str, ...] = ("events",)


@dataclass(frozen=True)
class Move:
    """Units that change node when a plan changes: their state (weights and momentum) leaves
    part `part` (replica `replica`) of `path[0]` and travels hop by hop to `path[-1]`."""

    path: tuple[str, ...]
    units: tuple[int, ...]
    part: int
    replica: int = 0


MakePlan = Callable[["RunConfig", "np.ndarray", int], tuple[list["np.ndarray"], "Plan"]]
Replan = Callable[["Plan", Sequence[str]], tuple["Plan", Mapping[int, int]]]


@dataclass(frozen=True)
class Technique:
    """One technique: its builder, its topology, its checks, its roles, its planner and re-plan hooks."""

    name: str
    summary: str
    """One line for --help and the docs."""
    build: Callable[[Plan, Segment], Schedule]
    """Plan and segment -> per-node programs (a pure function)."""
    make_plan: MakePlan
    """Config, training labels and the model's unit count -> training shards and the plan."""
    check: Callable[[Plan], None]
    """Raises ValueError naming what is wrong with a plan for this technique."""
    roles: tuple[str, ...]
    """Roles of its nodes, the coordinator's first."""
    accelerated_roles: frozenset[str]
    """Roles whose parts `--server-device` places on an accelerator."""
    pipelined: bool = False
    """Whether mini-batches are cut into micro-batches (else the plan's count is reported as 1)."""
    options: frozenset[str] = frozenset()
    """Per-device options only some techniques accept (device_splits, device_micro_batches)."""
    planner: PlannerHook | None = None
    replan: Replan | None = None
    """Plan without the nodes given (failed, left) -> the new plan and old owner -> new owner;
    None: the technique cannot go on without a node yet."""
    droppable_roles: frozenset[str] = frozenset()
    """Roles of nodes besides the data owners that `replan` can go on without (FTPipeHD's workers)."""
    add_costs: Callable[[Plan, Mapping[str, Profile]], Plan] | None = None
    """Plan and the run's node profiles -> the plan with the costs its `replan` needs (a DP's)."""
    moves: Callable[[Plan, Plan, Collection[str]], list[Move]] | None = None
    """Old plan, new plan, dead nodes -> the units that travel between nodes (engine/move.py);
    None: a plan change moves nothing over the links."""
    adapt: Callable[[Plan, RunConfig], tuple[Callable[..., object], int] | None] | None = None
    """Plan and config -> a controller of the run loop and its segment length in mini-batches
    (FTPipeHD's re-partition), or None when the config turns it off."""


def drop_owners(plan: Plan, gone: Sequence[str]) -> tuple[Plan, Mapping[int, int]]:
    """The re-plan of techniques whose data owners are independent: go on without them."""
    return plan.without_owners(gone)
