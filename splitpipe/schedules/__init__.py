"""Techniques as pure functions: plan and epoch -> per-node programs (a Schedule)."""

from __future__ import annotations

from collections.abc import Callable

from splitpipe.plan import Plan
from splitpipe.schedules.fl import build_fl
from splitpipe.schedules.ftpipehd import build_ftpipehd
from splitpipe.schedules.ir import Schedule
from splitpipe.schedules.mpsl import build_mpsl
from splitpipe.schedules.sl import build_sl
from splitpipe.schedules.split import build_pipelearn, build_sfl

__all__ = ["BUILDERS", "TECHNIQUES", "build_schedule"]

Builder = Callable[[Plan, int], Schedule]

BUILDERS: dict[str, Builder] = {
    "fl": build_fl,
    "sl": build_sl,
    "sfl": build_sfl,
    "pipelearn": build_pipelearn,
    "mpsl": build_mpsl,
    "ftpipehd": build_ftpipehd,
}
TECHNIQUES = tuple(BUILDERS)


def build_schedule(plan: Plan, epoch: int) -> Schedule:
    try:
        builder = BUILDERS[plan.technique]
    except KeyError:
        raise ValueError(f"unknown technique '{plan.technique}'; choose one of: {', '.join(BUILDERS)}") from None
    return builder(plan, epoch)
