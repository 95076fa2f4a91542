"""Trace to metrics: epoch time, busy and idle time, bytes, throughput, bottleneck bound."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence

from splitpipe.span import Span

__all__ = ["epoch_metrics"]


def epoch_metrics(spans: Sequence[Span], nodes: Iterable[str], links: Iterable[str]) -> dict[str, object]:
    """Metrics of one epoch's spans (the clock starts at 0 at the epoch's start).

    The bound is the busiest resource's busy time: no schedule of the same work on the same
    resources can finish sooner. Efficiency = bound / epoch time.
    """
    busy: dict[str, float] = defaultdict(float)
    link_bytes: dict[str, int] = {name: 0 for name in links}
    end = 0.0
    for s in spans:
        busy[s.resource] += s.duration
        end = max(end, s.end)
        if s.is_link:
            link_bytes[s.resource] = link_bytes.get(s.resource, 0) + s.bytes
    nodes = list(nodes)
    for name in [*nodes, *link_bytes]:
        busy.setdefault(name, 0.0)
    bound = max(busy.values(), default=0.0)
    return {
        "time_s": end,
        "busy_s": dict(sorted(busy.items())),
        "idle_s": {n: max(0.0, end - busy[n]) for n in nodes},
        "bytes": link_bytes,
        "throughput_Bps": sum(link_bytes.values()) / end if end > 0 else 0.0,
        "bound_s": bound,
        "efficiency": bound / end if end > 0 else 0.0,
    }
