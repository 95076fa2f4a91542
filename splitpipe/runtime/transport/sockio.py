"""Bytes through a socket in few system calls: one `sendmsg` per message, tensor bytes read straight into their buffer.

Python pays for every system call (the GIL is let go and taken back, the thread may sleep and
wake), so on two busy cores the number of calls, not the bytes, sets the socket transport's
pace (docs/transport.md, Throughput). Writing: a message's header and tensor buffers go out in
one `sendmsg` of memoryviews, no joining copy; `write_some` takes only what the kernel accepts
now, so a caller can hand the rest to a thread. Reading: small reads (prefixes, headers,
small messages) come from a buffered reader, several messages per call; a large read takes
what is buffered and then reads the socket straight into the destination, on plain TCP with
MSG_WAITALL (one call for the whole tensor). TLS sockets have no sendmsg and no flags on recv:
they write buffer by buffer and read record by record, through the same functions.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Callable, Sequence

__all__ = ["SocketReader", "write_all", "write_some", "rest", "READ_BUFFER", "DIRECT_FROM", "AFTER_LARGE"]

#: Read buffer of a connection: a few small messages or one mid-size activation (up to 64 KiB and its header)
#: per system call, decoded straight from it (wire.py).
READ_BUFFER = 128 << 10
#: What one `recv` into the buffer takes at most after a large body was read: little of the next large one
#: copied twice (the rest of it goes straight into its tensor).
AFTER_LARGE = 16 << 10
#: Reads of at least this many bytes bypass the buffer (no second copy).
DIRECT_FROM = 64 << 10
#: A large body is read in slices of this size, each a sign of life (a few per second on a 1 MB/s link).
DIRECT_SLICE = 256 << 10
#: Most buffers one sendmsg takes (the kernel's IOV_MAX is 1024).
_IOV_MAX = 512

Buffers = Sequence[memoryview | bytes]


def _plain(sock: socket.socket) -> bool:
    return not isinstance(sock, ssl.SSLSocket)


class SocketReader:
    """A socket's buffered reader (`readinto`, `close`) whose large reads skip the buffer.

    Small reads come out of a buffer that one `recv` fills (several small messages per system
    call); a read of DIRECT_FROM bytes or more takes what is buffered and then reads the socket
    straight into the destination. The buffer is its own (not io.BufferedReader's), so that a
    thread can see what is buffered and peek at it without blocking (`buffered`, `peek`,
    `fill(wait=False)`): the socket transport's receiving thread reads a message itself only when
    all of it is in. `heard`, once set, is called whenever bytes arrive (transport/progress.py:
    bytes count as a sign of life), so a large body is read in slices of DIRECT_SLICE that each
    report. Not thread-safe: one thread reads at a time (the connection's read lock).
    """

    def __init__(self, sock: socket.socket, buffer: int = READ_BUFFER) -> None:
        self._sock = sock
        self.heard: Callable[[], None] | None = None
        self._buffer = memoryview(bytearray(buffer))
        self._start = self._end = 0   # the buffered bytes are _buffer[_start:_end]
        self._wait_all = _plain(sock)
        self._fill = buffer   # bytes one fill reads at most: the whole buffer, or AFTER_LARGE after a large read
        self._closed = False

    @property
    def buffered(self) -> int:
        return self._end - self._start

    def peek(self) -> memoryview:
        """The buffered bytes (valid until the next read)."""
        return self._buffer[self._start:self._end]

    def consume(self, nbytes: int) -> None:
        """Drop the first `nbytes` buffered bytes (read through `peek`); at most `buffered`."""
        self._start += min(nbytes, self._end - self._start)

    @property
    def capacity(self) -> int:
        """Bytes the buffer holds at most."""
        return len(self._buffer)

    def fill_to(self, nbytes: int) -> None:
        """Read until at least `nbytes` (at most `capacity`) are buffered, blocking as long as it takes;
        ConnectionError if the stream ends first."""
        self._fill = len(self._buffer)   # this connection carries messages that fit: read them whole
        while self._end - self._start < nbytes:
            if not self.fill():
                raise ConnectionError(f"stream ended inside a message ({self._end - self._start} of {nbytes} bytes)")

    def fill(self, wait: bool = True) -> int | None:
        """Add what one `recv` gives to the buffer: the bytes got, 0 at the end of the stream, None if
        `wait` is False and nothing was there. The buffer must have room (it holds less than its size)."""
        if self._closed:
            raise ValueError("read from a closed socket reader")
        if self._start:   # move what is left to the front: room for a whole buffer's worth
            left = self._end - self._start
            self._buffer[:left] = self._buffer[self._start:self._end]
            self._start, self._end = 0, left
        if self._end == len(self._buffer):
            return None   # full: nothing read
        room = self._buffer[self._end:self._end + self._fill]
        try:
            n = self._sock.recv_into(room) if wait else self._sock.recv_into(room, 0, socket.MSG_DONTWAIT)
        except (BlockingIOError, InterruptedError):
            return None
        if n and self.heard is not None:
            self.heard()
        self._end += n
        return n

    def readinto(self, view: memoryview, /) -> int:
        """Read up to len(view) bytes into `view`, at least one unless the stream ended (then 0)."""
        want = len(view)
        if self._start == self._end and want < DIRECT_FROM and not self.fill():
            return 0
        got = min(self._end - self._start, want)
        if got:
            view[:got] = self._buffer[self._start:self._start + got]
            self._start += got
        if got == want or want < DIRECT_FROM:
            return got
        self._fill = min(AFTER_LARGE, len(self._buffer))   # large bodies come here: read little of the next
        while got < want:   # a large read: straight from the socket into the destination
            piece = view[got:got + DIRECT_SLICE]
            if self._closed:
                raise ValueError("read from a closed socket reader")
            n = (self._sock.recv_into(piece, 0, socket.MSG_WAITALL) if self._wait_all
                 else self._sock.recv_into(piece))
            if not n:
                break
            got += n
            if self.heard is not None:
                self.heard()
        return got

    def close(self) -> None:
        self._closed = True


def write_all(sock: socket.socket, buffers: Buffers) -> None:
    """Write every byte of `buffers`, blocking as long as it takes."""
    if not _plain(sock):
        for buffer in buffers:
            sock.sendall(buffer)
        return
    views = [memoryview(b) for b in buffers if len(b)]
    while views:
        sent = sock.sendmsg(views[:_IOV_MAX])
        views = _after(views, sent)


def write_some(sock: socket.socket, buffers: Buffers) -> int:
    """Write what the kernel takes now without blocking (plain sockets); the number of bytes written."""
    sent = 0
    if len(buffers) == 1:   # a small message, joined: one plain send, the common case in short
        try:
            sent = sock.send(buffers[0], socket.MSG_DONTWAIT)
        except (BlockingIOError, InterruptedError):
            return 0
        if sent == len(buffers[0]):
            return sent
    views = rest(buffers, sent)
    while views:
        try:
            n = sock.sendmsg(views[:_IOV_MAX], (), socket.MSG_DONTWAIT)
        except (BlockingIOError, InterruptedError):
            break
        sent += n
        views = _after(views, n)
    return sent


def rest(buffers: Buffers, skip: int) -> list[memoryview]:
    """`buffers` without their first `skip` bytes."""
    return _after([b if isinstance(b, memoryview) else memoryview(b) for b in buffers if len(b)], skip)


def _after(views: list[memoryview], sent: int) -> list[memoryview]:
    """The views left once `sent` bytes of them went out (a partly sent view is sliced)."""
    at = 0
    while at < len(views) and sent >= views[at].nbytes:
        sent -= views[at].nbytes
        at += 1
    left = views[at:]
    if left and sent:
        left[0] = left[0][sent:]
    return left
