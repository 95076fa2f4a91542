"""Link shaping in the sender: each outgoing link is a FIFO at its bandwidth, delivered one latency later."""

from __future__ import annotations

import heapq
import itertools
import logging
import math
import threading
import time
from collections.abc import Callable, Hashable, Mapping
from typing import Generic, TypeVar

from splitpipe.network import LinkSpec

__all__ = ["LinkShaper", "is_unshaped"]

log = logging.getLogger("splitpipe.transport")
K = TypeVar("K", bound=Hashable)


def is_unshaped(link: LinkSpec | None) -> bool:
    """True when a link adds no delay at all (no spec, or infinite bandwidth and zero latency)."""
    return link is None or (math.isinf(link.bandwidth_Bps) and link.latency_s == 0)


class LinkShaper(Generic[K]):
    """Delays deliveries on outgoing links exactly as the emulator's event engine does.

    A message of n bytes submitted at `now` on link `key` begins when the link is free,
    holds it n / bandwidth seconds, and is delivered one latency after that:
    begin = max(now, link_free); end = begin + n / bw; due = end + latency. This is a token
    bucket with no burst. Latency does not hold the link, so the next message's transfer
    overlaps the previous one's flight; a single thread delivers from a heap ordered by due
    time (ties in submit order, so each link stays FIFO). Unshaped links deliver inline.
    """

    def __init__(self, links: Mapping[K, LinkSpec] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._links = dict(links or {})
        self._clock = clock
        self._link_free: dict[K, float] = {}
        self._heap: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = itertools.count()
        self._cond = threading.Condition()
        self._busy = 0          # deliveries popped but still running
        self._closed = False
        self._thread: threading.Thread | None = None

    def link(self, key: K) -> LinkSpec | None:
        return self._links.get(key)

    def schedule(self, key: K, nbytes: int, now: float | None = None) -> float:
        """Reserve link `key` for `nbytes` sent at `now`; return the due time of delivery."""
        if nbytes < 0:
            raise ValueError(f"message size must be >= 0 bytes, got {nbytes}")
        link = self._links.get(key)
        now = self._clock() if now is None else now
        if link is None:
            return now
        with self._cond:
            begin = max(now, self._link_free.get(key, -math.inf))
            end = begin + link.transfer_s(nbytes)
            self._link_free[key] = end
        return end + link.latency_s

    def submit(self, key: K, nbytes: int, deliver: Callable[[], None]) -> float:
        """Run `deliver()` when a message of `nbytes` sent now on link `key` arrives; return its due time."""
        if self._closed:
            raise RuntimeError("link shaper is closed")
        if is_unshaped(self._links.get(key)):
            deliver()
            return self._clock()
        due = self.schedule(key, nbytes)
        with self._cond:
            heapq.heappush(self._heap, (due, next(self._seq), deliver))
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
                _, _, deliver = heapq.heappop(self._heap)
                self._busy += 1
            try:
                deliver()
            except Exception:  # a failing delivery must not stop the link
                log.exception("delivery on a shaped link failed")
            finally:
                with self._cond:
                    self._busy -= 1
                    self._cond.notify_all()
