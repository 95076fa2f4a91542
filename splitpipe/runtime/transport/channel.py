"""One authenticated socket of the socket transport, and the sending side that writes messages to it in order."""

from __future__ import annotations

import logging
import queue
import select
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from splitpipe.runtime.transport.base import TransportError
from splitpipe.runtime.transport.wire import Pool, Reader, encode_bye

__all__ = ["Connection", "Channel"]

log = logging.getLogger("splitpipe.transport")

Buffers = list[memoryview | bytes]


@dataclass(eq=False)
class Connection:
    """An authenticated socket to `peer` carrying messages one way (`mode`, from the dialer's view)."""

    sock: socket.socket
    reader: Reader
    peer: str
    mode: str
    where: str                                   # the other end's address, for messages
    on_release: Callable[[Connection], None] = field(default=lambda conn: None, repr=False)
    _released: bool = field(default=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def write(self, buffers: Buffers) -> None:
        for buffer in buffers:
            self.sock.sendall(buffer)

    def release(self) -> None:
        """Close the socket (unblocking a thread reading it) and give up its place; idempotent."""
        with self._lock:
            if self._released:
                return
            self._released = True
        try:
            socket.socket.shutdown(self.sock, socket.SHUT_RDWR)   # the plain socket's: no TLS close_notify dance
        except OSError:
            pass
        for closing in (self.reader, self.sock):
            try:
                closing.close()
            except (OSError, ValueError):
                pass
        self.on_release(self)


class Channel:
    """Writes messages to one peer, in order, on a connection it obtains on first use.

    The thread gets its connection from `open()` (dialling the peer, or waiting for the peer to
    dial in) and writes from the queue until `close`. A small message put while nothing is
    queued and the socket has room is written at once by the caller: no hand-over to the
    thread, which is most of a small message's latency. If writing fails, `error` says why and
    the messages still queued are dropped; the owner reports it on the next send and starts afresh.
    Buffers from `pool` go back to it once written.
    """

    def __init__(self, node: str, peer: str, open_connection: Callable[[], Connection],
                 pool: Pool | None = None) -> None:
        self.node, self.peer = node, peer
        self._open, self._pool = open_connection, pool
        self._queue: queue.Queue[Buffers | None] = queue.Queue()
        self._lock = threading.Lock()          # guards the fields below
        self._write_lock = threading.Lock()    # one writer on the socket at a time
        self._connection: Connection | None = None
        self._unwritten = 0                    # messages put and not yet written
        self._closing = False
        self.where = "?"
        self.error: TransportError | None = None   # a failure to report on the next send
        self.finished = False                      # the channel is over; a new send needs a new one
        self._thread = threading.Thread(target=self._run, name=f"splitpipe-send-{node}-{peer}", daemon=True)
        self._thread.start()

    def put(self, buffers: Buffers, small: bool = False) -> None:
        with self._lock:
            if self.finished:
                if self.error is None:
                    self.error = TransportError(f"connection from node '{self.node}' to peer '{self.peer}' at "
                                                f"{self.where} had ended; a message was dropped")
                    log.error("%s", self.error)
                return
            connection = self._connection
            inline = (small and connection is not None and not self._unwritten and not self._closing
                      and _has_room(connection.sock) and self._write_lock.acquire(blocking=False))
            self._unwritten += 1
            if not inline:
                self._queue.put(buffers)
                return
        assert connection is not None
        try:
            self._write(connection, buffers)
        except (OSError, ValueError) as exc:
            self._fail(connection, exc, 1)
            connection.release()
        finally:
            self._write_lock.release()

    def pending(self) -> int:
        return self._unwritten

    def close(self, timeout: float) -> bool:
        """Send what is queued, say bye and wait up to `timeout`; False if it did not finish."""
        with self._lock:
            self._closing = True
        self._queue.put(None)
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _write(self, connection: Connection, buffers: Buffers) -> None:
        connection.write(buffers)
        with self._lock:
            self._unwritten -= 1
        if self._pool is not None:
            self._pool.recycle(buffers)

    def _fail(self, connection: Connection, exc: Exception, in_flight: int) -> None:
        self._end(TransportError(f"connection from node '{self.node}' to peer '{self.peer}' at "
                                 f"{connection.where} failed: {exc}"), in_flight)

    def _end(self, error: TransportError, in_flight: int = 0) -> None:
        """The channel is over: drop what is queued; keep `error` for the owner unless nothing was lost."""
        with self._lock:
            if self.finished:
                return
            self.finished = True
            dropped = in_flight
            while True:
                try:
                    dropped += self._queue.get_nowait() is not None
                except queue.Empty:
                    break
            self._queue.put(None)   # lets the thread end
        if self._closing and not dropped:
            log.debug("%s (while closing)", error)
        else:
            self.error = error
            log.error("%s; %d queued message(s) dropped", error, dropped)

    def _run(self) -> None:
        try:
            connection = self._open()
        except TransportError as exc:
            self._end(exc)
            return
        with self._lock:
            self._connection, self.where = connection, connection.where
        buffers: Buffers | None = None
        try:
            while True:
                buffers = self._queue.get()
                with self._write_lock:
                    if self.finished:
                        break
                    if buffers is None:
                        connection.write(encode_bye())
                        break
                    self._write(connection, buffers)
                buffers = None
            with self._lock:
                self.finished = True
        except (OSError, ValueError) as exc:
            self._fail(connection, exc, int(buffers is not None))
        finally:
            connection.release()


def _has_room(sock: socket.socket) -> bool:
    """Whether the socket's send buffer has room, so a small write will not block."""
    try:
        return bool(select.select([], [sock], [], 0)[1])
    except (OSError, ValueError):
        return False
