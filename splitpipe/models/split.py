"""Cutting a model of units into parts: P-1 cut indices give P contiguous parts."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from itertools import pairwise

from torch import nn

__all__ = ["check_cuts", "even_cuts", "split_model"]


def check_cuts(num_units: int, cuts: Sequence[int]) -> tuple[int, ...]:
    """Validate `cuts` for a model of `num_units` units and return them as a tuple.

    A cut `c` is the index of the first unit of a new part, so each cut lies
    in 1..num_units-1 and cuts strictly increase. No cuts means one part.
    Every problem is collected, then raised once as a ValueError.
    """
    if isinstance(num_units, bool) or not isinstance(num_units, int) or num_units < 1:
        raise ValueError(f"num_units {num_units!r} must be an integer of at least 1")
    seen = tuple(cuts)
    problems = _cut_problems(num_units, seen)
    if problems:
        raise ValueError("; ".join(problems))
    return seen


def _cut_problems(num_units: int, cuts: tuple[int, ...]) -> list[str]:
    """Every reason `cuts` is not valid for `num_units` units (empty when valid)."""
    others = tuple(
        cut for cut in cuts if isinstance(cut, bool) or not isinstance(cut, int)
    )
    if others:
        return [f"cuts {cuts} contain non-integers {others}"]
    problems: list[str] = []
    if any(not 1 <= cut < num_units for cut in cuts):
        valid = (
            "a model of 1 unit cannot be cut; pass no cuts"
            if num_units == 1
            else f"each cut must be in 1..{num_units - 1} for a model of {num_units} units"
        )
        problems.append(f"cuts {cuts} out of range: {valid}")
    if any(later <= earlier for earlier, later in pairwise(cuts)):
        problems.append(
            f"cuts {cuts} not strictly increasing: each cut must exceed the one before it"
        )
    return problems


def even_cuts(num_units: int, parts: int) -> tuple[int, ...]:
    """P-1 cuts that give every part floor or ceil of num_units / P units."""
    if not 1 <= parts <= num_units:
        raise ValueError(f"cannot cut a model of {num_units} units into {parts} parts: need 1..{num_units} parts")
    return tuple(k * num_units // parts for k in range(1, parts))


def split_model(model: nn.Sequential, cuts: Sequence[int]) -> list[nn.Sequential]:
    """Split `model` at `cuts` into len(cuts)+1 parts; part i holds units[cuts[i-1]:cuts[i]].

    The parts share the units (no copy), so their parameters are the model's;
    each unit keeps its name in the model ("0", "1", ...), which makes a
    part's state_dict keys tell where it was cut from.
    """
    units = list(model.named_children())
    bounds = (0, *check_cuts(len(units), cuts), len(units))
    return [
        nn.Sequential(OrderedDict(units[start:stop]))
        for start, stop in pairwise(bounds)
    ]
