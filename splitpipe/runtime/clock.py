"""Clock offsets between nodes, estimated NTP-style from a few ping exchanges at start.

One exchange, on two clocks (the coordinator's and the node's)::

    coordinator  t0 ----ping---->            t3      offset = ((t1 - t0) + (t2 - t3)) / 2
    node                  t1 ... t2 --pong-->        rtt    = (t3 - t0) - (t2 - t1)

`offset` is how far the node's clock is ahead of the coordinator's; it is exact when the two
one-way delays are equal, and the sample with the smallest round trip bounds the error best.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["ClockSample", "ClockOffset", "estimate_offset"]


@dataclass(frozen=True)
class ClockSample:
    """One ping exchange: t0 sent and t3 received on the coordinator's clock, t1 and t2 on the node's."""

    t0: float
    t1: float
    t2: float
    t3: float

    @property
    def offset(self) -> float:
        return ((self.t1 - self.t0) + (self.t2 - self.t3)) / 2

    @property
    def rtt(self) -> float:
        return (self.t3 - self.t0) - (self.t2 - self.t1)


@dataclass(frozen=True)
class ClockOffset:
    """A node's clock minus the coordinator's (`offset_s`), known within +/- rtt_s / 2."""

    offset_s: float
    rtt_s: float

    def to_node(self, t: float) -> float:
        """A coordinator time on the node's clock."""
        return t + self.offset_s

    def to_coordinator(self, t: float) -> float:
        """A node time on the coordinator's clock."""
        return t - self.offset_s


def estimate_offset(samples: Iterable[ClockSample]) -> ClockOffset:
    """The offset of the sample with the smallest round trip."""
    best = min(samples, key=lambda s: s.rtt, default=None)
    if best is None:
        raise ValueError("estimate_offset needs at least one ping exchange, got none")
    return ClockOffset(best.offset, max(0.0, best.rtt))
