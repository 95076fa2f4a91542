"""Refusal warnings at a bounded rate, so a flood of bad input cannot flood the log."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

__all__ = ["RateLimitedLog"]


class RateLimitedLog:
    """Logs at most `burst` records per `period` seconds per key; says how many it held back.

    Keys are whatever groups refusals (the claimed sender, say), so one noisy peer cannot hide
    another's first warning. The clock is injectable so tests need not sleep.
    """

    def __init__(self, logger: logging.Logger, burst: int = 5, period: float = 10.0,
                 clock: Callable[[], float] = time.monotonic, max_keys: int = 1024) -> None:
        if burst < 1 or not period > 0:
            raise ValueError(f"burst must be at least 1 and period positive, got {burst} and {period}")
        self._log, self._burst, self._period, self._clock = logger, burst, period, clock
        self._max_keys = max_keys
        self._windows: dict[str, tuple[float, int, int]] = {}   # key -> (window start, logged, held back)
        self._lock = threading.Lock()

    def warning(self, key: str, msg: str, *args: object) -> bool:
        """Log `msg % args` unless `key` used up its burst in this period; whether it was logged."""
        now = self._clock()
        with self._lock:
            start, logged, held = self._windows.get(key, (now, 0, 0))
            if now - start >= self._period:
                if held:
                    self._log.warning("%d more like the above from %s were not logged in the last %g s",
                                      held, key, self._period)
                start, logged, held = now, 0, 0
            if logged >= self._burst:
                self._windows[key] = (start, logged, held + 1)
                return False
            if key not in self._windows and len(self._windows) >= self._max_keys:
                self._windows.clear()   # bound the table itself; forgetting only allows a new burst
            self._windows[key] = (start, logged + 1, held)
        self._log.warning(msg, *args)
        return True
