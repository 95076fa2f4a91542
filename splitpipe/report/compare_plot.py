"""Comparison PNG: epoch time and idle time per technique, as two bar panels."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from os import PathLike
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__: list[str] = []


def plot_compare(
    rows: Mapping[str, Mapping[str, float]], path: str | PathLike[str]
) -> None:
    """Write bars of `epoch_time_s` and of `server_idle_s` beside `device_idle_s` per technique.

    `rows` maps a technique to its summary (see `summarize`); a NaN value draws
    no bar and is labelled "-", so a missing server never reads as zero idle.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if not rows:
        raise ValueError("plot_compare needs at least one technique (got none)")
    names = list(rows)
    fig = Figure(figsize=(max(10.0, 1.6 * len(names) + 4.0), 4.5))
    FigureCanvasAgg(fig)
    time_ax, idle_ax = fig.subplots(1, 2)
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
    fig.tight_layout()
    fig.savefig(path, dpi=100)


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
