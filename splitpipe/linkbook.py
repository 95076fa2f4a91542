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
    ACKs: link(dst -> src).ack_s(n) on channel(dst, src), queued at `due`

ACKs are booked when the data is in (`due`), the moment a real receiver knows of them, and
take their turn on the reverse channel after whatever was booked before that moment.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import Collection, Hashable
from typing import Generic, TypeVar

from splitpipe.network import LinkSpec

__all__ = ["ANY", "Channel", "channel", "holder", "LinkBook"]

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


class LinkBook(Generic[K]):
    """Free times of channels and the ACKs waiting to take their turn on them."""

    def __init__(self) -> None:
        self._free: dict[K, float] = {}
        self._acks: dict[K, list[tuple[float, int, float]]] = {}
        self._seq = itertools.count()

    def book(self, ch: K, link: LinkSpec, nbytes: float, now: float) -> tuple[float, float]:
        """Reserve `ch` for `nbytes` of payload sent at `now` on `link`; return (begin, end)."""
        begin = max(now, self._settle(ch, now))
        end = begin + link.transfer_s(nbytes)
        self._free[ch] = end
        return begin, end

    def book_acks(self, ch: K, link: LinkSpec, nbytes: float, at: float) -> None:
        """Queue on `ch` (over `link`, the reverse direction) the ACKs of `nbytes` that arrived at `at`."""
        seconds = link.ack_s(nbytes)
        if seconds > 0:
            heapq.heappush(self._acks.setdefault(ch, []), (at, next(self._seq), seconds))

    def _settle(self, ch: K, now: float) -> float:
        free = self._free.get(ch, -math.inf)
        queue = self._acks.get(ch)
        while queue and queue[0][0] <= now:
            at, _, seconds = heapq.heappop(queue)
            free = max(free, at) + seconds
        self._free[ch] = free
        return free
