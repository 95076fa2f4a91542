"""Timeline PNG of one epoch: a lane per node and per link direction, bars coloured by category.

Like Figure 1 of the PipeLearn paper. Lanes run top to bottom as

    server                  <- server / central node first
    server->device0         <- then the links out of it
    device0
    device0->server
    device1
    ...

Spans are grouped by (resource, category) and each group is one
`broken_barh` call, so tens of thousands of spans draw in about a second.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Mapping, Sequence
from os import PathLike
from statistics import median
from typing import TYPE_CHECKING

from splitpipe.span import CATEGORIES, Span

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__: list[str] = []

#: Fixed colour per category, so every timeline reads the same way.
PALETTE = {
    "forward": "tab:blue",
    "backward": "tab:orange",
    "upload": "tab:green",
    "download": "tab:red",
    "aggregate": "tab:purple",
    "step": "tab:gray",
}

#: Nodes drawn above all others, in this order.
TOP_NODES = ("server", "central")

_LABEL_FONT_PT = 6.0
_BAR_HEIGHT = 0.8
#: Bars narrower than this (typically) get no white edge, which would hide them.
_EDGE_MIN_INCHES = 0.05


def select_epoch(
    spans: Sequence[Span], epoch: int | None = None
) -> tuple[int, list[Span]]:
    """Return the epoch to draw (the first present unless given) and its spans."""
    present = sorted({span.epoch for span in spans})
    if not present:
        raise ValueError("no spans to draw (got an empty sequence)")
    chosen = present[0] if epoch is None else epoch
    if chosen not in present:
        raise ValueError(f"no spans of epoch {chosen} (epochs present: {present})")
    return chosen, [span for span in spans if span.epoch == chosen]


def lane_order(resources: set[str] | Sequence[str]) -> list[str]:
    """Order lanes: each node, then the links out of it; server and central on top."""
    names = set(resources)
    nodes = {name for name in names if "->" not in name}
    links: dict[str, list[str]] = defaultdict(list)
    for name in names - nodes:
        links[name.split("->", 1)[0]].append(name)
    lanes: list[str] = []
    for node in sorted(nodes | links.keys(), key=_node_key):
        if node in nodes:
            lanes.append(node)
        lanes.extend(sorted(links.get(node, []), key=_natural_key))
    return lanes


def timeline_figure(
    spans: Sequence[Span], title: str = "", epoch: int | None = None,
    events: Sequence[Mapping[str, object]] = (),
) -> Figure:
    """Draw the spans of one epoch on a new Agg-backed figure and return it; the run's
    `events` of that epoch (failures, re-partitions) as dashed lines."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    chosen, selected = select_epoch(spans, epoch)
    unknown = sorted({span.category for span in selected} - set(CATEGORIES))
    if unknown:
        raise ValueError(
            f"unknown span categories {unknown}; expected one of {list(CATEGORIES)}"
        )
    lanes = lane_order({span.resource for span in selected})
    row = {name: index for index, name in enumerate(lanes)}

    fig = Figure(figsize=(12.0, max(2.5, 0.35 * len(lanes) + 1.4)))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    fig.subplots_adjust(left=0.12, right=0.88)
    t0 = min(span.start for span in selected)
    t1 = max(span.end for span in selected)
    t1 = t1 if t1 > t0 else t0 + 1.0
    ax.set_xlim(t0, t1)
    inches_per_second = ax.get_position().width * fig.get_figwidth() / (t1 - t0)
    _draw_bars(ax, selected, row, inches_per_second)
    ax.set_ylim(len(lanes) - 0.5, -0.5)
    ax.set_yticks(range(len(lanes)), labels=lanes)
    ax.set_xlabel("time (s)")
    ax.grid(axis="x", alpha=0.3)
    ax.set_axisbelow(True)
    ax.set_title(f"{title} (epoch {chosen})" if title else f"epoch {chosen}")
    _draw_labels(ax, selected, row, inches_per_second)
    _draw_legend(ax, {span.category for span in selected})
    for event in events:
        at = event.get("time_s")
        if event.get("epoch") == chosen and isinstance(at, (int, float)):
            ax.axvline(at, color="black", linestyle="--", linewidth=1)
            ax.annotate(str(event.get("event", "")), (at, -0.5), xytext=(2, -2), textcoords="offset points",
                        rotation=90, va="top", fontsize=7)
    return fig


def plot_timeline(
    spans: Sequence[Span],
    path: str | PathLike[str],
    title: str = "",
    epoch: int | None = None,
    events: Sequence[Mapping[str, object]] = (),
) -> None:
    """Write the timeline of one epoch (the first present unless `epoch` is given) as a PNG."""
    timeline_figure(spans, title, epoch, events).savefig(path, dpi=100, bbox_inches="tight")


def _draw_bars(
    ax: Axes, spans: Sequence[Span], row: dict[str, int], inches_per_second: float
) -> None:
    """One broken_barh per (resource, category); thin white edges split wide bars."""
    groups: dict[tuple[str, str], list[tuple[float, float]]] = defaultdict(list)
    for span in spans:
        groups[(span.resource, span.category)].append((span.start, span.duration))
    typical = median(span.duration for span in spans) * inches_per_second
    edge = 0.5 if typical >= _EDGE_MIN_INCHES else 0.0
    for (resource, category), xranges in groups.items():
        ax.broken_barh(
            xranges,
            (row[resource] - _BAR_HEIGHT / 2, _BAR_HEIGHT),
            facecolors=PALETTE[category],
            edgecolors="white",
            linewidth=edge,
        )


def _draw_labels(
    ax: Axes, spans: Sequence[Span], row: dict[str, int], inches_per_second: float
) -> None:
    """Write each span's label inside its bar, only where the text fits."""
    char_inches = 0.6 * _LABEL_FONT_PT / 72
    for span in spans:
        if not span.label:
            continue
        if span.duration * inches_per_second < (len(span.label) + 1) * char_inches:
            continue
        ax.text(
            span.start + span.duration / 2,
            row[span.resource],
            span.label,
            ha="center",
            va="center",
            fontsize=_LABEL_FONT_PT,
            color="white",
            clip_on=True,
        )


def _draw_legend(ax: Axes, present: set[str]) -> None:
    from matplotlib.patches import Patch

    handles = [
        Patch(color=PALETTE[name], label=name) for name in CATEGORIES if name in present
    ]
    ax.legend(
        handles=handles, loc="upper left", bbox_to_anchor=(1.005, 1.0), frameon=False
    )


def _node_key(name: str) -> tuple[int, list[int | str]]:
    rank = TOP_NODES.index(name) if name in TOP_NODES else len(TOP_NODES)
    return rank, _natural_key(name)


def _natural_key(name: str) -> list[int | str]:
    """Sort "device10" after "device9": digit runs compare as numbers."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]
