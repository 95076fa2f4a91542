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

import socket
import time

from splitpipe.runtime.transport.sockio import SocketReader

__all__ = ["Progress"]


class Progress:
    """When bytes last arrived from each peer (time.time()), on any connection it writes to this node."""

    def __init__(self) -> None:
        self.last: dict[str, float] = {}

    def reader(self, sock: socket.socket, buffering: int) -> SocketReader:
        """A reader of `sock` whose reads count for the peer `watch` names."""
        return SocketReader(sock, buffering)

    def watch(self, reader: object, peer: str) -> None:
        """From now on, bytes `reader` (made by `reader`) reads are `peer`'s (its handshake is done)."""
        if isinstance(reader, SocketReader):
            last = self.last
            reader.heard = lambda: last.__setitem__(peer, time.time())

    def heard(self, peer: str) -> float | None:
        return self.last.get(peer)
