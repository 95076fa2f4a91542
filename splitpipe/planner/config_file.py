"""A chosen plan as a run config: TOML written by RunConfig's own declaration, so `splitpipe run` takes it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from splitpipe.config import RunConfig

__all__ = ["plan_toml"]

#: Per-device overrides the planner clears unless it sets them.
CLEARED = ("device_splits", "device_micro_batches")


def plan_toml(config: RunConfig, settings: Mapping[str, object], comments: Sequence[str] = ()) -> str:
    """`config` with `settings` applied, every set key written (lists as arrays); `comments` head the file."""
    chosen = config.with_(**({key: None for key in CLEARED} | dict(settings)))  # fails here, not in `run`
    return chosen.to_toml(list(comments))
