"""PipeLearn: the split program of split.py with each mini-batch cut into micro-batches."""

from __future__ import annotations

from typing import TYPE_CHECKING

from splitpipe.plan import Plan
from splitpipe.schedules.ir import Schedule
from splitpipe.schedules.record import PlannerHook, Segment, Technique, drop_owners
from splitpipe.schedules.split import build_split, check_two_parts
from splitpipe.schedules.star import split_cut, star_plan

if TYPE_CHECKING:
    import numpy as np

    from splitpipe.config import RunConfig

__all__ = ["build_pipelearn", "TECHNIQUE"]


def build_pipelearn(plan: Plan, segment: Segment) -> Schedule:
    return build_split(plan, segment)


def make_plan(config: RunConfig, labels: np.ndarray, num_units: int) -> tuple[list[np.ndarray], Plan]:
    return star_plan("pipelearn", config, labels, num_units, split_cut(config, num_units))


TECHNIQUE = Technique(
    name="pipelearn",
    summary="SFL with each mini-batch cut into micro-batches that pipeline device compute, links and server",
    build=build_pipelearn,
    make_plan=make_plan,
    check=check_two_parts,
    roles=("server", "device"),
    accelerated_roles=frozenset({"server"}),
    pipelined=True,
    options=frozenset({"device_splits", "device_micro_batches"}),
    planner=PlannerHook("split", micro_batches=True, per_device=True, methods=("search", "paper")),
    replan=drop_owners,
)
