"""Accuracy against time: a faster epoch is worth little if it needs more epochs to learn.

Techniques differ in both epoch time and what an epoch buys (FL's local epochs, SL's one
model, PipeLearn's stale-free pipeline), so comparisons also ask *when* each run reached a
test accuracy: the run's clock (epoch times summed) at the end of the first epoch that did.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from typing import Any

__all__: list[str] = []


def accuracy_curve(report: Mapping[str, Any]) -> tuple[list[float], list[float]]:
    """(time at the end of each epoch, test accuracy of that epoch); NaN where accuracy is missing."""
    epochs = report.get("epochs")
    if not isinstance(epochs, list) or not epochs:
        raise ValueError(f"report needs a non-empty list of epochs (got {epochs!r:.60})")
    times, accuracies, clock = [], [], 0.0
    for epoch in epochs:
        clock += float(epoch["time_s"])
        times.append(clock)
        value = epoch.get("test_accuracy")
        accuracies.append(float(value) if isinstance(value, numbers.Real) else math.nan)
    return times, accuracies


def time_to_accuracy(report: Mapping[str, Any], target: float) -> float:
    """Seconds until the end of the first epoch whose test accuracy is >= `target`; NaN if none is."""
    check_target(target)
    for time_s, accuracy in zip(*accuracy_curve(report)):
        if accuracy >= target:
            return time_s
    return math.nan


def check_target(target: float) -> float:
    """`target` if it is an accuracy a run can reach (0 < target <= 1), else a ValueError."""
    if not (isinstance(target, numbers.Real) and 0 < target <= 1):
        raise ValueError(f"target accuracy must be in (0, 1] (a fraction: 0.9 for 90%), got {target!r}")
    return float(target)
