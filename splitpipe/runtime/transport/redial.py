"""Dialling a broken connection again, with backoff, for as long as a peer may take to come back.

A dial-out node's pull connection is the only way its peer can write to it: if it breaks
(the peer's end closed it, a NAT forgot it, a transient socket error), nothing else would
open another. The node dials again at once, then after 0.1, 0.2, 0.4 ... 2 s, until
`within` seconds have passed; a peer that is really gone is then reported as broken (and
the mailbox's silence detection names it sooner, if its silence period is shorter).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TypeVar

from splitpipe.runtime.transport.base import TransportError

__all__ = ["redial", "FIRST_WAIT_S", "MAX_WAIT_S"]

#: Seconds before the second try, doubled after each failure up to MAX_WAIT_S.
FIRST_WAIT_S = 0.1
MAX_WAIT_S = 2.0

T = TypeVar("T")


def redial(dial: Callable[[float], T], within: float, stopping: threading.Event) -> tuple[T | None, str]:
    """(connection, "") from the first `dial(timeout)` that succeeds within `within` seconds, else (None, why)."""
    deadline = time.monotonic() + within
    wait, why = FIRST_WAIT_S, "no time left to dial"
    while not stopping.is_set():
        left = deadline - time.monotonic()
        if left <= 0:
            break
        try:
            return dial(left), ""
        except TransportError as exc:
            why = str(exc)
        if stopping.wait(min(wait, max(0.0, deadline - time.monotonic()))):
            break
        wait = min(2 * wait, MAX_WAIT_S)
    return None, why
