"""When transfers hold links: the one booking rule of the event engine and the runtime's shaper.

A transfer is booked on a *channel*, the resource it occupies. Each direction between two
nodes is its own channel, except where a node has a *radio*: then everything it sends is one
channel (`(node, "*")`, its uplink) and everything it receives another (`("*", node)`, its
downlink), whichever peer is at the other end. An MP-SL owner sends to the first compute
node and the aggregator and hears from the last compute node on one radio each way, so two
of its transfers take the sum of their times, not the max.

    begin = max(now, channel free)        a channel is FIFO: one transfer at a time
    end   = begin + link.transfer_s(n)     payload and headers at the line rate
    due   = end + link.latency_s           latency does not hold the channel
    ACKs: link(dst -> src).ack_s(n) on channel(dst, src), at `due`

ACKs are booked when the data is in (`due`), the moment a real receiver sends them. They
go out as they are made, between the segments of whatever data is on or queued for their
channel at that moment, so each one pushes every transfer booked there that ends after it
by its own time (a `Booking`'s begin and end move later); on an idle channel it takes its
turn before the next transfer. This is what a link does when a device uploads while it
downloads (PipeLearn's micro-batches: measured 4.8 ms more per 256 KB upload at 10 Mbit/s
while a 256 KB gradient came down, the time of that gradient's ACKs; docs/links.md).
An ACK's time is fixed when its data is booked: if ACKs of the other direction later
push that data, its own ACKs do not move (a shift of about 2% of 2%).
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import Collection, Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

from splitpipe.network import LinkSpec

__all__ = ["ANY", "Booking", "Channel", "channel", "holder", "LinkBook"]

#: The peer of a radio channel: any node.
ANY = "*"
Channel = tuple[str, str]
K = TypeVar("K", bound=Hashable)


def channel(src: str, dst: str, radios: Collection[str] = ()) -> Channel:
    """The resource a transfer src -> dst holds: src's uplink, dst's downlink, or the link itself."""
    if src in radios:
        return (src, ANY)
    if dst in radios:
        return (ANY, dst)
    return (src, dst)


def holder(ch: Channel) -> str:
    """The node that books `ch` in a real run: the sender, or the receiver of a downlink radio."""
    return ch[1] if ch[0] == ANY else ch[0]


@dataclass
class Booking:
    """One transfer on a channel: [begin, end] on the wire, pushed later by ACKs that interleave."""

    begin: float
    end: float
    ack: bool = False


class LinkBook(Generic[K]):
    """Transfers booked on channels and the ACKs waiting to take their turn on them.

    Callers read a transfer's `Booking` when they need it (the event engine when the message
    may be received, the shaper when it is due): until then ACKs booked later may push it.
    """

    def __init__(self) -> None:
        self._free: dict[K, float] = {}
        self._live: dict[K, list[Booking]] = {}
        self._acks: dict[K, list[tuple[float, int, float]]] = {}
        self._seq = itertools.count()

    def book(self, ch: K, link: LinkSpec, nbytes: float, now: float) -> Booking:
        """Reserve `ch` for `nbytes` of payload sent at `now` on `link` (`now` never goes back)."""
        live = self._live.setdefault(ch, [])
        live[:] = [b for b in live if b.end > now]     # done: no ACK can come before now
        begin = max(now, self._settle(ch, now))
        booking = Booking(begin, begin + link.transfer_s(nbytes))
        live.append(booking)
        self._free[ch] = booking.end
        self._interleave(ch)
        return booking

    def book_acks(self, ch: K, link: LinkSpec, nbytes: float, at: float) -> None:
        """Put on `ch` (over `link`, the reverse direction) the ACKs of `nbytes` that arrived at `at`."""
        seconds = link.ack_s(nbytes)
        if seconds > 0:
            heapq.heappush(self._acks.setdefault(ch, []), (at, next(self._seq), seconds))
            self._interleave(ch)

    def _interleave(self, ch: K) -> None:
        """Place the ACKs made before the channel's last booking ends, oldest first: (1) into the
        data on the wire when they come, which ends later by their time; (2) else in the gap they
        come in, or behind the ACKs on the wire; then (3) every booking behind moves as far as
        the one before it now overlaps it."""
        queue, live = self._acks.get(ch), self._live.get(ch, [])
        while queue and live and queue[0][0] < live[-1].end:
            at, _, seconds = heapq.heappop(queue)
            i = next(i for i, b in enumerate(live) if b.end > at)
            on_wire = live[i].begin <= at
            if on_wire and not live[i].ack:                       # (1)
                live[i].end += seconds
            else:                                                 # (2)
                start = live[i].end if on_wire else at
                i += on_wire
                live.insert(i, Booking(start, start + seconds, ack=True))
            for before, after in zip(live[i:], live[i + 1:]):     # (3)
                shift = max(0.0, before.end - after.begin)
                after.begin, after.end = after.begin + shift, after.end + shift
            self._free[ch] = live[-1].end

    def _settle(self, ch: K, now: float) -> float:
        """The channel's free time after the ACKs made by `now` that found it idle."""
        free = self._free.get(ch, -math.inf)
        queue = self._acks.get(ch)
        while queue and queue[0][0] <= now:
            at, _, seconds = heapq.heappop(queue)
            free = max(free, at) + seconds
        self._free[ch] = free
        return free
