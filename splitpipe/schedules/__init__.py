"""Techniques as pure functions: plan and segment -> per-node programs (a Schedule).

Each technique is one module with a TECHNIQUE record (record.py); registry.py lists them and
loads a technique's module on first use, so naming techniques imports no torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from splitpipe.schedules.record import PlannerHook, Segment, Technique
from splitpipe.schedules.registry import DEFAULT, NAMES, technique, techniques

if TYPE_CHECKING:
    from splitpipe.plan import Plan
    from splitpipe.schedules.ir import Schedule

__all__ = ["TECHNIQUES", "DEFAULT", "build_schedule", "technique", "techniques", "Technique", "PlannerHook",
           "Segment"]

TECHNIQUES = NAMES


def build_schedule(plan: Plan, segment: int | Segment) -> Schedule:
    """The programs of `segment` (an epoch number means the whole epoch) under `plan`."""
    if isinstance(segment, int):
        segment = Segment(segment)
    return technique(plan.technique).build(plan, segment)
