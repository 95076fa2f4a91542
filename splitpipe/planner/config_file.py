"""A chosen plan as a run config: TOML whose keys are RunConfig's, so `splitpipe run` takes it."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import fields

from splitpipe.config import RunConfig

__all__ = ["plan_toml"]

#: Per-device overrides the planner clears unless it sets them.
CLEARED = ("device_splits", "device_micro_batches")


def plan_toml(config: RunConfig, settings: Mapping[str, object], comments: Sequence[str] = ()) -> str:
    """`config` with `settings` applied, every set key written; `comments` head the file."""
    values = {f.name: getattr(config, f.name) for f in fields(RunConfig) if f.name != "extra"}
    values.update({key: None for key in CLEARED})
    values.update(settings)
    RunConfig(**values)  # what we write must load: fail here, not in `run`
    lines = [f"# {c}" for c in comments]
    lines += [f"{key} = {_value(value)}" for key, value in values.items() if value is not None]
    return "\n".join(lines) + "\n"


def _value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return ("inf" if value > 0 else "-inf") if math.isinf(value) else repr(value)
    return json.dumps(str(value))
