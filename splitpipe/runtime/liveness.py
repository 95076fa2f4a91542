"""Heartbeats: each node tells the nodes it depends on that it is alive, so that a dead process
or a cut network fails the run within seconds, naming the node, instead of at a phase's timeout."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from types import TracebackType

from splitpipe.runtime.transport import Transport

__all__ = ["Heartbeat", "HEARTBEAT_S", "SILENCE_S"]

log = logging.getLogger("splitpipe.runtime")

#: Seconds between two heartbeats.
HEARTBEAT_S = 1.0
#: Seconds without a word from a watched node before it counts as gone: ten heartbeats missed in a row
#: (a stalled process, or a network cut without a reset; a dead process breaks its streams at once).
#: Five proved too few on a loaded 2-core host with ten nodes in one process (`--silence` sets it).
SILENCE_S = 10 * HEARTBEAT_S


class Heartbeat:
    """Sends {"type": "alive"} to `peers` every `interval` seconds from a thread of its own.

    The transport's sends are thread-safe; a peer that cannot be reached is written into
    `lost` (peer -> why), which the node's mailbox reads: a broken stream names a dead peer
    within seconds, sooner than its silence would.
    """

    def __init__(self, transport: Transport, peers: Iterable[str] = (), interval: float = HEARTBEAT_S,
                 lost: dict[str, str] | None = None) -> None:
        self.transport = transport
        self.lost = {} if lost is None else lost
        self.interval = interval
        self.peers = set(peers)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"splitpipe-heartbeat-{transport.name}", daemon=True)
        self._thread.start()

    def add(self, peer: str) -> None:
        with self._lock:
            self.peers.add(peer)

    def remove(self, peer: str) -> None:
        with self._lock:
            self.peers.discard(peer)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2 * self.interval)

    def __enter__(self) -> Heartbeat:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            with self._lock:
                peers = sorted(self.peers)
            for peer in peers:
                try:
                    self.transport.send_control(peer, {"type": "alive"})
                except Exception as exc:  # noqa: BLE001 - the mailbox decides what it means
                    log.debug("%s: heartbeat to %s failed: %s", self.transport.name, peer, exc)
                    self.lost[peer] = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
