"""Every technique by name; modules load on first use, so listing names imports no torch."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from splitpipe.schedules.record import Technique

__all__ = ["NAMES", "DEFAULT", "COMPARED", "technique", "techniques"]

#: name -> module whose TECHNIQUE record describes it.
MODULES = {
    "fl": "splitpipe.schedules.fl",
    "sl": "splitpipe.schedules.sl",
    "sfl": "splitpipe.schedules.sfl",
    "pipelearn": "splitpipe.schedules.pipelearn",
    "mpsl": "splitpipe.schedules.mpsl",
    "ftpipehd": "splitpipe.schedules.ftpipehd",
    "sfl2": "splitpipe.schedules.sfl2",
}
NAMES = tuple(MODULES)
#: The technique of a config that names none (and of the planner's calibration runs).
DEFAULT = "pipelearn"
#: What `splitpipe compare` compares unless told: the one-hop techniques PipeLearn is measured against.
COMPARED = ("fl", "sl", "sfl", "pipelearn")


def technique(name: str) -> Technique:
    """The record of technique `name`; ValueError lists the known ones."""
    module = MODULES.get(name)
    if module is None:
        raise ValueError(f"unknown technique '{name}'; choose one of: {', '.join(NAMES)}")
    record: Technique = importlib.import_module(module).TECHNIQUE
    return record


def techniques() -> list[Technique]:
    return [technique(name) for name in NAMES]
