"""The socket transport's inbox, and who reads a connection: the thread in receive() itself, when it can.

A reader thread per connection that hands every message to the thread in `receive()` costs
two thread wake-ups per message, most of a small message's round trip (docs/transport.md,
Throughput). So the connections of a plain-TCP node are read leader/follower style:

    receive():  inbox empty -> poll(connections + wake pipe) -> a connection has bytes
                  -> take its read lock -> all of the message in? read it here, return it  (1)
                                        -> else hand it to the connection's reader thread   (2)
    reader:     receive() waited lately? park (3) : poll its socket -> take the read lock -> read one message
                  -> inbox (and wake the thread in receive() through the pipe)              (4)

(1) Only a message whose every byte is already buffered here or in the kernel (FIONREAD) is
read in receive(), so that receive() never blocks on a slow or stalled peer past its timeout.
(2) A message still arriving, a goodbye, the end of the stream: the reader thread's, which
reads it as before (stamping liveness as bytes come, announcing a broken connection).
(3) While receive() is waiting, or did within PARK_S, reader threads stay off the sockets, so
the two do not both wake for each message; when nobody calls receive(), the readers read
everything within PARK_S, keeping liveness stamps and the kernel's buffers moving.
(4) Every message of a connection is read and put in the inbox under its read lock, so a
peer's messages stay in order whichever thread reads them.

TLS sockets are always read by their reader thread (one SSL object, one reader; no FIONREAD
for decrypted bytes): `direct=False`.
"""

from __future__ import annotations

import fcntl
import os
import queue
import select
import struct
import termios
import threading
import time
import weakref
from collections.abc import Callable

from splitpipe.runtime.transport.base import Message
from splitpipe.runtime.transport.channel import Connection
from splitpipe.runtime.transport.wire import CONTROL, DATA, PREFIX

__all__ = ["Inbox", "PARK_S"]

#: Reader threads stay parked this long after receive() last waited.
PARK_S = 0.05
_INT = struct.Struct("i")


class Inbox:
    """Messages received, in order per peer; `get` reads complete messages off the connections itself."""

    def __init__(self, direct: bool) -> None:
        self.direct = direct and hasattr(select, "poll")
        self._queue: queue.SimpleQueue[Message] = queue.SimpleQueue()   # C-implemented: a quick hand-over
        self._connections: tuple[Connection, ...] = ()
        self._lock = threading.Lock()
        self._waiter = threading.Lock()   # one thread at a time waits on the connections
        self._waiting = False
        self._waiter_id = 0   # the thread waiting in get(): it needs no wake-up for what it puts itself
        self._park_until = 0.0
        self._polled: tuple[list[Connection], list[int]] | None = None   # what self._polling polls
        self._polling: tuple[select.poll, dict[int, Connection]] = (select.poll(), {})
        self._wake_r, self._wake_w = os.pipe()
        for fd in (self._wake_r, self._wake_w):
            os.set_blocking(fd, False)
        weakref.finalize(self, _close, self._wake_r, self._wake_w)

    # -- producers --------------------------------------------------------------------------
    def put(self, message: Message) -> None:
        self._queue.put(message)
        self.poke()

    def poke(self) -> None:
        """Wake the thread waiting in get(), if any (a message is in, or a connection's turn is over)."""
        if self._waiting and threading.get_ident() != self._waiter_id:
            try:
                os.write(self._wake_w, b"\0")
            except OSError:   # the pipe is full: it is awake already
                pass

    def add(self, connection: Connection) -> None:
        with self._lock:
            self._connections += (connection,)
        self.poke()

    def discard(self, connection: Connection) -> None:
        with self._lock:
            self._connections = tuple(c for c in self._connections if c is not connection)

    # -- a connection's reader thread -------------------------------------------------------------
    def wait_turn(self, connection: Connection) -> None:
        """Return when `connection`'s reader thread should read its next message (then has_bytes says whether
        one began, unless it was handed to it)."""
        while not connection.handed and not connection.released:
            if self._waiting or time.monotonic() < self._park_until:
                connection.turn.wait(PARK_S)
                connection.turn.clear()
                continue
            if connection.reader.buffered:
                return
            try:
                if _poll([connection.sock.fileno()], PARK_S):
                    return
            except (OSError, ValueError):
                return

    def has_bytes(self, connection: Connection) -> bool:
        """Whether bytes wait on `connection` now (call with its read lock held)."""
        if connection.reader.buffered:
            return True
        try:
            return bool(_poll([connection.sock.fileno()], 0))
        except (OSError, ValueError):
            return True   # let the read fail and end the connection

    # -- the thread in receive() -------------------------------------------------------------------
    def get(self, timeout: float | None, read: Callable[[Connection], Message | None]) -> Message | None:
        """The next message, waiting up to `timeout` (None: for ever). `read(connection)` reads one message that
        is all in off `connection` (its read lock held) and returns it, or None if it went elsewhere (dropped
        as malformed, answered by on_control, held by a shaped link)."""
        if not self._queue.empty():
            try:
                return self._queue.get_nowait()
            except queue.Empty:   # another thread took it
                pass
        if not self.direct or (timeout is not None and timeout <= 0) or not self._waiter.acquire(blocking=False):
            try:
                return self._queue.get(timeout=timeout)
            except queue.Empty:
                return None
        try:
            self._waiter_id, self._waiting = threading.get_ident(), True
            return self._wait(None if timeout is None else time.monotonic() + timeout, read)
        finally:
            self._waiting = False
            self._park_until = time.monotonic() + PARK_S
            self._waiter.release()

    def _wait(self, deadline: float | None, read: Callable[[Connection], Message | None]) -> Message | None:
        skip: set[Connection] = set()   # being read by their reader thread: back in play at the next wake-up
        while True:
            if not self._queue.empty():
                try:
                    return self._queue.get_nowait()
                except queue.Empty:
                    pass
            candidates = [c for c in self._connections if not c.handed and c not in skip]
            ready = [c for c in candidates if c.reader.buffered]
            if not ready:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return None
                poller, by_fd = self._poller(candidates)
                for fd, _ in poller.poll(None if left is None else max(0, int(left * 1000 + 0.999))):
                    if fd == self._wake_r:
                        _drain(fd)
                        skip.clear()
                    elif fd in by_fd:
                        ready.append(by_fd[fd])
            for connection in ready:
                message = self._take(connection, read, skip)
                if message is not None:
                    return message

    def _poller(self, connections: list[Connection]) -> tuple[select.poll, dict[int, Connection]]:
        """A poll object for the wake pipe and `connections`, made again only when they change (one
        thread waits at a time): registering every descriptor anew cost a system call's worth per message."""
        fds = [c.sock.fileno() for c in connections]
        if self._polled is None or connections != self._polled[0] or fds != self._polled[1]:
            poller = select.poll()
            poller.register(self._wake_r, select.POLLIN)
            by_fd = {fd: c for fd, c in zip(fds, connections) if fd >= 0}
            for fd in by_fd:
                poller.register(fd, select.POLLIN)
            self._polled, self._polling = (connections, fds), (poller, by_fd)
        return self._polling

    def _take(self, connection: Connection, read: Callable[[Connection], Message | None],
              skip: set[Connection]) -> Message | None:
        """Read `connection`'s next message here if all of it is in; else leave it to its reader thread.
        The message is returned, not queued: nothing was queued when it was read (1), so none of its peer's
        earlier messages waits in the queue."""
        if not connection.read_lock.acquire(blocking=False):
            skip.add(connection)   # its reader is at it; it pokes when done
            return None
        try:
            if not self._queue.empty():
                return None   # a message came in meanwhile (perhaps from this connection): it goes first
            if _complete(connection):
                return read(connection)   # (1)
        except (OSError, ValueError):   # closed under us: its reader thread ends it (and says it broke)
            connection.release()
        finally:
            connection.read_lock.release()
        connection.handed = True
        skip.add(connection)
        connection.turn.set()
        return None


def _complete(connection: Connection) -> bool:
    """Whether a whole data or control message is in (buffered, or waiting in the kernel), so reading it cannot block."""
    reader = connection.reader
    if reader.buffered < PREFIX.size:
        reader.fill(wait=False)
        if reader.buffered < PREFIX.size:
            return False
    kind, head_len, body_len = PREFIX.unpack_from(reader.peek())
    if kind != DATA and kind != CONTROL:
        return False   # a goodbye or worse: the reader thread's
    need = PREFIX.size + head_len + body_len - reader.buffered
    if need <= 0:
        return True
    return need <= _INT.unpack(fcntl.ioctl(connection.sock.fileno(), termios.FIONREAD, b"\0\0\0\0"))[0]


def _poll(fds: list[int], timeout: float | None) -> list[int]:
    """The fds of `fds` that are readable (or closed, or failed) within `timeout` seconds (None: for ever)."""
    poller = select.poll()
    for fd in fds:
        poller.register(fd, select.POLLIN)
    ms = None if timeout is None else max(0, int(timeout * 1000 + 0.999))
    return [fd for fd, _ in poller.poll(ms)]


def _drain(fd: int) -> None:
    try:
        while os.read(fd, 4096):
            pass
    except OSError:   # empty (BlockingIOError) or closed
        pass


def _close(*fds: int) -> None:
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass
