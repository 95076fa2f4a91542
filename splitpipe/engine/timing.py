"""How long a compute action takes on the virtual clock: measured on this host, or from a profile."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from splitpipe.profile import Profile
from splitpipe.schedules.ir import AGGREGATE, BACKWARD, FORWARD, LOAD, SNAPSHOT, STEP, Action

__all__ = ["Timing", "MeasuredTiming", "ProfileTiming", "part_units", "SpeedChanges"]


def part_units(num_units: int, cuts: Sequence[int]) -> list[range]:
    """The unit indices of each part."""
    bounds = [0, *cuts, num_units]
    return [range(a, b) for a, b in zip(bounds, bounds[1:])]


class Timing:
    """Base: `duration(node, action, measured_s)` in virtual seconds."""

    name = "base"

    def duration(self, node: str, action: Action, measured_s: float) -> float:
        raise NotImplementedError


@dataclass
class MeasuredTiming(Timing):
    """Host time of the action scaled by the node's speed (0.1 = ten times slower)."""

    speeds: Mapping[str, float]
    name = "measured"

    def duration(self, node: str, action: Action, measured_s: float) -> float:
        return measured_s / self.speeds[node]


@dataclass
class ProfileTiming(Timing):
    """Fixed durations from a profile (per node, or one for all), scaled by node speed."""

    profiles: Mapping[str, Profile]
    speeds: Mapping[str, float]
    parts: Sequence[range]
    name = "profile"

    def duration(self, node: str, action: Action, measured_s: float = 0.0) -> float:
        profile = self.profiles[node]
        units = self.parts[action.part]
        if action.op == FORWARD:
            seconds = profile.forward_s(units, action.samples)
        elif action.op == BACKWARD:
            seconds = profile.backward_s(units, action.samples)
        elif action.op == STEP:
            seconds = profile.step_s(units)
        elif action.op == AGGREGATE:
            seconds = profile.param_bytes(units) * len(action.reads) * profile.copy_s_per_byte
        elif action.op in (SNAPSHOT, LOAD):
            seconds = profile.param_bytes(units) * profile.copy_s_per_byte
        else:
            raise ValueError(f"action {action} takes no compute time")
        seconds = profile.calibrated(action.op, seconds, profile.place(units))  # its cost beyond the units
        return seconds / self.speeds[node]


class SpeedChanges:
    """--speed-change in the emulator: a run loop controller that changes nothing in the plan but
    the world, setting `timing`'s speed of a node from the first step boundary at or after its time.

    The plan keeps the speeds it was made with: a technique that adapts must measure the change.
    """

    def __init__(self, timing: MeasuredTiming | ProfileTiming, changes: Sequence[tuple[str, float, float]]) -> None:
        self.timing = timing
        self.pending = sorted(changes, key=lambda change: change[1])
        self.apply(0.0)

    def apply(self, time_s: float) -> None:
        while self.pending and self.pending[0][1] <= time_s:
            node, _, speed = self.pending.pop(0)
            self.timing.speeds = {**self.timing.speeds, node: speed}

    def __call__(self, plan: object, segment: object, boundary: object) -> None:
        self.apply(boundary.time_s)  # type: ignore[attr-defined]
