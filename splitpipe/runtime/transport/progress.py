"""Bytes coming in count as a sign of life: a peer busy sending one large message is not silent.

Heartbeats share a connection with the data (FIFO per peer), so on a slow real link an
`alive` queued behind a large tensor arrives only after it: a 50 MB state dict over a 4G
uplink of 1 MB/s holds every heartbeat for 50 s, past any sensible silence period. (Emulated
links do not: the sender's shaper holds the tensor and hands it to the socket only when due,
while control messages go at once.) So the reader of each connection stamps the time whenever
bytes arrive from its peer, and the mailbox counts a node silent only if neither a message
nor a byte came from it for the silence period.
"""

from __future__ import annotations

import io
import socket
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

__all__ = ["Progress"]


class _Stamped(socket.SocketIO):
    """A socket's raw reader that stamps `progress` for `peer` (once known) at every read that got bytes
    (one method over SocketIO's own: no measurable cost, even for 4 KiB messages)."""

    def __init__(self, sock: socket.socket, progress: Progress) -> None:
        super().__init__(sock, "rb")
        self._progress = progress
        self.peer: str | None = None

    def readinto(self, buffer: WriteableBuffer) -> int | None:
        n = super().readinto(buffer)
        if n and self.peer is not None:
            self._progress.last[self.peer] = time.time()
        return n


class Progress:
    """When bytes last arrived from each peer (time.time()), on any connection it writes to this node."""

    def __init__(self) -> None:
        self.last: dict[str, float] = {}

    def reader(self, sock: socket.socket, buffering: int) -> io.BufferedReader:
        """A buffered reader of `sock` whose reads count for the peer `watch` names."""
        return io.BufferedReader(_Stamped(sock, self), buffering)

    @staticmethod
    def watch(reader: object, peer: str) -> None:
        """From now on, bytes `reader` (made by `reader`) reads are `peer`'s (its handshake is done)."""
        raw = getattr(reader, "raw", None)
        if isinstance(raw, _Stamped):
            raw.peer = peer

    def heard(self, peer: str) -> float | None:
        return self.last.get(peer)
