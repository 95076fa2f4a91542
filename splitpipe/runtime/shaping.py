"""Link shaping in a real run: channels booked as the emulator books them (splitpipe/linkbook.py).

A node shapes the channels it holds: its outgoing links, and, for a node with a radio, its
one downlink, on which messages from any peer are delayed as they come in. It books the
ACKs of what it received on its reverse channel, as the kernel's TCP would send them: they
go between the segments of what it is sending then, so its pending messages are due later.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import math
import threading
import time
from collections.abc import Callable, Collection, Hashable, Mapping
from typing import Generic, TypeVar

from splitpipe.linkbook import Booking, Channel, LinkBook, channel, holder
from splitpipe.network import LinkSpec

__all__ = ["LinkShaper", "NodeShaper", "is_unshaped"]

log = logging.getLogger("splitpipe.transport")
K = TypeVar("K", bound=Hashable)
Failed = Callable[[Exception], object]   # told of a delivery that failed on the shaper's thread


def is_unshaped(link: LinkSpec | None) -> bool:
    """True when a link adds no delay at all (no spec, or infinite bandwidth and zero latency)."""
    return link is None or (math.isinf(link.bandwidth_Bps) and link.latency_s == 0)


class LinkShaper(Generic[K]):
    """Delays deliveries on links exactly as the emulator's event engine does.

    A message of n bytes submitted at `now` on link `key` begins when the link is free,
    holds it link.transfer_s(n) seconds, and is delivered one latency after that:
    begin = max(now, link_free); end = begin + transfer; due = end + latency (LinkBook). This
    is a token bucket with no burst. Latency does not hold the link, so the next message's
    transfer overlaps the previous one's flight; a single thread delivers from a heap ordered
    by due time (ties in submit order, so each link stays FIFO). ACKs booked later may push a
    pending message: it goes back on the heap at its new due time when its old one comes.
    Unshaped links deliver inline.
    `link=` books `key` with another spec than its own (a radio channel of several links).
    """

    def __init__(self, links: Mapping[K, LinkSpec] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._links = dict(links or {})
        self._clock = clock
        self._book: LinkBook[K] = LinkBook()
        self._heap: list[tuple[float, int, Callable[[], None], Booking, float, Failed | None]] = []
        self._seq = itertools.count()
        self._cond = threading.Condition()
        self._busy = 0          # deliveries popped but still running
        self._closed = False
        self._thread: threading.Thread | None = None

    def link(self, key: K) -> LinkSpec | None:
        return self._links.get(key)

    def schedule(self, key: K, nbytes: int, now: float | None = None, link: LinkSpec | None = None) -> float:
        """Reserve link `key` for `nbytes` sent at `now`; return the due time of delivery as booked
        now (ACKs booked later may push it)."""
        if nbytes < 0:
            raise ValueError(f"message size must be >= 0 bytes, got {nbytes}")
        link = self._links.get(key) if link is None else link
        now = self._clock() if now is None else now
        if link is None:
            return now
        return self._reserve(key, link, nbytes, now).end + link.latency_s

    def _reserve(self, key: K, link: LinkSpec, nbytes: int, now: float) -> Booking:
        with self._cond:
            return self._book.book(key, link, nbytes, now)

    def book_acks(self, key: K, link: LinkSpec, nbytes: int, at: float | None = None) -> None:
        """Hold `key` (over `link`) for the ACKs of `nbytes` received at `at` (default now)."""
        with self._cond:
            self._book.book_acks(key, link, nbytes, self._clock() if at is None else at)

    def submit(self, key: K, nbytes: int, deliver: Callable[[], None], link: LinkSpec | None = None,
               failed: Failed | None = None) -> float:
        """Run `deliver()` when a message of `nbytes` sent now on link `key` arrives; return its due time.

        On an unshaped link it runs now and its error goes to the caller; later, on this shaper's
        thread, an error reaches no caller: it is logged and handed to `failed`."""
        if self._closed:
            raise RuntimeError("link shaper is closed")
        link = self._links.get(key) if link is None else link
        if is_unshaped(link):
            deliver()
            return self._clock()
        assert link is not None
        booking = self._reserve(key, link, nbytes, self._clock())
        due = booking.end + link.latency_s
        with self._cond:
            heapq.heappush(self._heap, (due, next(self._seq), deliver, booking, link.latency_s, failed))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="splitpipe-shaper", daemon=True)
                self._thread.start()
            self._cond.notify_all()
        return due

    def pending(self) -> int:
        with self._cond:
            return len(self._heap) + self._busy

    def drain(self, timeout: float | None = None) -> bool:
        """Wait until every submitted message was delivered; False if `timeout` ran out first."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while self._heap or self._busy:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._cond.wait(left)
        return True

    def close(self, timeout: float | None = 0.0) -> None:
        """Deliver what is due within `timeout` seconds, drop the rest and stop the thread."""
        if timeout:
            self.drain(timeout)
        with self._cond:
            self._closed = True
            dropped = len(self._heap)
            self._heap.clear()
            self._cond.notify_all()
        if dropped:
            log.warning("link shaper closed with %d undelivered message(s)", dropped)
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5.0)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._closed:
                    if self._heap:
                        wait = self._heap[0][0] - self._clock()
                        if wait <= 0:
                            break
                        self._cond.wait(wait)
                    else:
                        self._cond.wait()
                if self._closed:
                    return
                due, seq, deliver, booking, latency, failed = heapq.heappop(self._heap)
                if booking.end + latency > due:   # ACKs pushed it since: wait for its new due time
                    heapq.heappush(self._heap, (booking.end + latency, seq, deliver, booking, latency, failed))
                    continue
                self._busy += 1
            try:
                deliver()
            except Exception as exc:  # a failing delivery must not stop the link
                log.exception("delivery on a shaped link failed")
                if failed is not None:
                    failed(exc)
            finally:
                with self._cond:
                    self._busy -= 1
                    self._cond.notify_all()


class NodeShaper:
    """One node's share of the link model: the channels it holds, and the ACKs it sends.

    `links` is the whole table `(src, dst) -> LinkSpec` (links not touching `name` are
    ignored) and `radios` the nodes whose links share one uplink and one downlink. Sends on a
    channel this node holds are delayed here; a peer's downlink radio is shaped by the peer,
    so those go at once. Messages in on this node's downlink radio are delayed here.
    """

    def __init__(self, name: str, links: Mapping[tuple[str, str], LinkSpec] | None = None,
                 radios: Collection[str] = (), clock: Callable[[], float] = time.monotonic) -> None:
        self.name = name
        self._links = {ends: spec for ends, spec in (links or {}).items() if name in ends}
        self._radios = frozenset(radios)
        self._shaper: LinkShaper[Channel] = LinkShaper(clock=clock)
        self._clock = clock
        self._failed: dict[str, Exception] = {}   # per peer: a delivery that failed since the last send to it

    def _held(self, src: str, dst: str) -> tuple[Channel, LinkSpec] | None:
        link = self._links.get((src, dst))
        ch = channel(src, dst, self._radios)
        return None if link is None or holder(ch) != self.name else (ch, link)

    def send(self, peer: str, nbytes: int, deliver: Callable[[], None]) -> float:
        """Deliver a message of `nbytes` to `peer` when the link model says it is in.

        A delayed delivery runs on the shaper's thread, where its error reaches no caller; so the
        next send to that peer raises it instead of going out (the sender hears what was lost).
        """
        failed = self._failed.pop(peer, None)
        if failed is not None:
            raise failed
        held = self._held(self.name, peer)
        if held is None:
            deliver()
            return self._clock()
        due = self._shaper.submit(held[0], nbytes, deliver, link=held[1],
                                  failed=lambda exc: self._failed.setdefault(peer, exc))
        back = self._held(peer, self.name)   # this node's downlink radio: the peer's ACKs come in on it
        if back is not None:
            self._shaper.book_acks(back[0], back[1], nbytes, due)
        return due

    def forget_failure(self, peer: str) -> None:
        """`peer` restarted: what failed on the way to its old process is not the new one's to answer for."""
        self._failed.pop(peer, None)

    def delays(self, peer: str) -> bool:
        """Whether messages to or from `peer` go through the link model here (else send and receive deliver at once)."""
        return bool(self._links) and (self._held(self.name, peer) is not None
                                      or self._held(peer, self.name) is not None)

    def receive(self, src: str, nbytes: int, deliver: Callable[[], None]) -> float:
        """Hand over a message of `nbytes` from `src` when it is in: now, or later on this node's radio."""
        held = self._held(src, self.name)
        due = self._clock() if held is None else self._shaper.submit(held[0], nbytes, deliver, link=held[1])
        if held is None:
            deliver()
        back = self._held(self.name, src)   # this node's ACKs of it
        if back is not None:
            self._shaper.book_acks(back[0], back[1], nbytes, due)
        return due

    def pending(self) -> int:
        return self._shaper.pending()

    def drain(self, timeout: float | None = None) -> bool:
        return self._shaper.drain(timeout)

    def close(self, timeout: float | None = 0.0) -> None:
        self._shaper.close(timeout)
