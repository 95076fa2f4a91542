"""Comparison PNG: epoch time and idle time per technique as bars, and test accuracy against time."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from os import PathLike
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__: list[str] = []


def plot_compare(
    rows: Mapping[str, Mapping[str, float]],
    curves: Mapping[str, tuple[Sequence[float], Sequence[float]]],
    path: str | PathLike[str],
    target: float | None = None,
) -> None:
    """Write bars of `epoch_time_s` and of `server_idle_s` beside `device_idle_s` per technique,
    and a third panel of test accuracy against the run's clock.

    `rows` maps a technique to its summary (see `summarize`); a NaN value draws
    no bar and is labelled "-", so a missing server never reads as zero idle.
    `curves` maps a technique to (time at each epoch's end, test accuracy), see
    `accuracy_curve`; `target`, when given, is drawn as a dashed line.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if not rows:
        raise ValueError("plot_compare needs at least one technique (got none)")
    names = list(rows)
    fig = Figure(figsize=(max(14.0, 1.6 * len(names) + 9.0), 4.5))
    FigureCanvasAgg(fig)
    time_ax, idle_ax, accuracy_ax = fig.subplots(1, 3)
    positions = list(range(len(names)))

    _bars(
        time_ax,
        positions,
        [rows[n]["epoch_time_s"] for n in names],
        0.6,
        "tab:blue",
        None,
    )
    time_ax.set_ylabel("epoch time (s)")
    time_ax.set_title("mean epoch time")

    width = 0.4
    left = [p - width / 2 for p in positions]
    right = [p + width / 2 for p in positions]
    _bars(
        idle_ax,
        left,
        [rows[n]["server_idle_s"] for n in names],
        width,
        "tab:red",
        "server",
    )
    device = [rows[n]["device_idle_s"] for n in names]
    _bars(idle_ax, right, device, width, "tab:green", "device (mean)")
    idle_ax.set_ylabel("idle time per epoch (s)")
    idle_ax.set_title("mean idle time")
    idle_ax.legend(frameon=False)

    for ax in (time_ax, idle_ax):
        rotation = 30 if len(names) > 3 else 0
        ax.set_xticks(
            positions,
            labels=names,
            rotation=rotation,
            ha="right" if rotation else "center",
        )
        ax.grid(axis="y", alpha=0.3)
        ax.set_axisbelow(True)
    _accuracy_panel(accuracy_ax, curves, target)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def _accuracy_panel(
    ax: Axes, curves: Mapping[str, tuple[Sequence[float], Sequence[float]]], target: float | None
) -> None:
    """One line per technique, a marker at each epoch's end, from time 0 (no accuracy yet)."""
    for name, (times, accuracies) in curves.items():
        ax.plot(list(times), list(accuracies), marker="o", markersize=3, label=name)
    if target is not None:
        ax.axhline(target, color="black", linestyle="--", linewidth=0.8, label=f"target {target:g}")
    ax.set_xlim(left=0.0)
    ax.set_xlabel("time (s, epochs end to end)")
    ax.set_ylabel("test accuracy")
    ax.set_title("test accuracy against time")
    ax.grid(alpha=0.3)
    ax.legend(frameon=False, fontsize=7)


def _bars(
    ax: Axes,
    x: Sequence[float],
    values: Sequence[float],
    width: float,
    color: str,
    label: str | None,
) -> None:
    heights = [0.0 if math.isnan(v) else v for v in values]
    texts = ["-" if math.isnan(v) else f"{v:.3g}" for v in values]
    bars = ax.bar(x, heights, width, color=color, label=label)
    ax.bar_label(bars, labels=texts, fontsize=7, padding=2)
