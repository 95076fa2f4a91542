"""SplitFed v1: the split program of split.py with whole mini-batches (one micro-batch), on one
server or, with --servers M, on M (MP-SL's horizontally scaled one-hop baseline)."""

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

__all__ = ["build_sfl", "TECHNIQUE"]


def build_sfl(plan: Plan, segment: Segment) -> Schedule:
    return build_split(plan, segment, 1)


def make_plan(config: RunConfig, labels: np.ndarray, num_units: int) -> tuple[list[np.ndarray], Plan]:
    return star_plan("sfl", config, labels, num_units, split_cut(config, num_units), config.servers or 1)


TECHNIQUE = Technique(
    name="sfl",
    summary="SplitFed v1: all devices in parallel, one server-side replica per device, FedAvg of both sides",
    build=build_sfl,
    make_plan=make_plan,
    check=check_two_parts,
    roles=("server", "device"),
    accelerated_roles=frozenset({"server"}),
    options=frozenset({"device_splits", "servers"}),
    planner=PlannerHook("split", per_device=True),
    replan=drop_owners,
)
