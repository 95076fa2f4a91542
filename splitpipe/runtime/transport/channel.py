"""One authenticated socket of the socket transport, and the sending side that writes messages to it in order."""

from __future__ import annotations

import logging
import queue
import select
import socket
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from splitpipe.runtime.transport.base import TransportError
from splitpipe.runtime.transport.sockio import SocketReader, write_all, write_some
from splitpipe.runtime.transport.wire import Pool, encode_bye

__all__ = ["Connection", "Channel", "discard"]

log = logging.getLogger("splitpipe.transport")

Buffers = list[memoryview | bytes]


@dataclass(eq=False)
class Connection:
    """An authenticated socket to `peer` carrying messages one way (`mode`, from the dialer's view)."""

    sock: socket.socket
    reader: SocketReader
    peer: str
    mode: str
    where: str                                   # the other end's address, for messages
    on_release: Callable[[Connection], None] = field(default=lambda conn: None, repr=False)
    _released: bool = field(default=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    #: Held by whichever thread reads a message off this connection (its reader, or one in receive()).
    read_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    #: The thread in receive() found a message it may not read itself (not all in yet, or the end): the reader's turn.
    handed: bool = field(default=False, repr=False)
    #: Wakes a parked reader thread when a message is handed to it.
    turn: threading.Event = field(default_factory=threading.Event, repr=False)
    delivered: int = field(default=0, repr=False)   # messages read off it, by either thread

    def __post_init__(self) -> None:
        self.plain = not isinstance(self.sock, ssl.SSLSocket)   # plain TCP: partial writes, sendmsg

    def write(self, buffers: Buffers) -> None:
        write_all(self.sock, buffers)

    @property
    def released(self) -> bool:
        return self._released

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
        self.turn.set()   # a parked reader thread: time to end
        self.on_release(self)


def discard(connection: Connection | None, sock: socket.socket) -> None:
    """Close a connection that never got going (its reader holds the socket open too)."""
    if connection is not None:
        connection.release()
    else:
        sock.close()


class Channel:
    """Writes messages to one peer, in order, on a connection it obtains on first use.

    The thread gets its connection from `open()` (dialling the peer, or waiting for the peer to
    dial in) and writes from the queue until `close`. A message put while nothing is queued
    goes out from the caller at once, without a hand-over to the thread (most of a small
    message's latency) and without a snapshot copy: over plain TCP the caller writes what the
    kernel takes now and hands only the rest, snapshotted, to the thread (`carry`, written
    before anything queued); over TLS, which cannot take part of a write back, only a small
    message that fits the socket's room is written by the caller. A put after `close` began (or
    after the channel ended) is refused, not queued behind the goodbye: `put` returns False and
    the owner finds the message another channel or raises. If writing fails, `error` says why
    and the messages still queued are dropped; the owner reports it on the next send and starts
    afresh. Buffers may be views of a caller's tensors until `put` returns; the
    copies that outlive it come from `pool` and go back to it once written.
    """

    def __init__(self, node: str, peer: str, open_connection: Callable[[], Connection],
                 pool: Pool | None = None) -> None:
        self.node, self.peer = node, peer
        self._open, self._pool = open_connection, pool or Pool(0)
        self._queue: queue.SimpleQueue[Buffers | None] = queue.SimpleQueue()   # C-implemented: a quicker hand-over
        self._lock = threading.Lock()          # guards the fields below
        self._write_lock = threading.Lock()    # one writer on the socket at a time
        self._connection: Connection | None = None
        self._carry: Buffers | None = None     # the rest of a message the caller began to write
        self._unwritten = 0                    # messages put and not yet written
        self._closing = False
        self.where = "?"
        self.error: TransportError | None = None   # a failure to report on the next send
        self.finished = False                      # the channel is over; a new send needs a new one
        self._thread = threading.Thread(target=self._run, name=f"splitpipe-send-{node}-{peer}", daemon=True)
        self._thread.start()

    def put(self, buffers: Buffers, small: bool = False) -> bool:
        """Send one message; `buffers` may alias the caller's memory until this returns. False if the
        channel is closing or over: nothing of the message was taken (the caller still owns `buffers`)."""
        if self._put_direct(buffers, small):
            return True
        if self._closing or self.finished:   # (checked again under the lock) no copy for a refused message
            return False
        copies = self._pool.snapshot(buffers)   # outside the lock: the thread goes on writing meanwhile
        with self._lock:
            if self._closing or self.finished:   # close() sets _closing under this lock before its goodbye
                self._pool.recycle([copy for copy in copies if all(copy is not given for given in buffers)])
                return False
            self._unwritten += 1
            self._queue.put(copies)
        return True

    def _put_direct(self, buffers: Buffers, small: bool) -> bool:
        """Write from the caller if the channel is idle; the rest of a partial write goes to the thread.

        The write lock is taken first: while the caller holds it nobody else writes, and a concurrent
        put finds it taken and queues behind this message."""
        if not self._write_lock.acquire(blocking=False):
            return False   # the thread (or another caller) is writing
        connection = self._connection
        try:
            if (connection is None or self._unwritten or self._closing or self.finished
                    or not (connection.plain or (small and _has_room(connection.sock)))):
                return False
            try:
                if not connection.plain:
                    connection.write(buffers)
                else:
                    sent = write_some(connection.sock, buffers)
                    if sent < sum(map(len, buffers)):
                        carry = self._pool.snapshot(buffers, sent)   # the pool's own buffers are not copied again
                        self._pool.recycle(_written(buffers, sent))   # those wholly written go back now
                        with self._lock:
                            self._unwritten += 1
                            self._carry = carry   # the thread writes it before anything queued, then recycles it
                            self._queue.put(_WAKE)
                        return True
            except (OSError, ValueError) as exc:
                self._fail(connection, exc, 1)
                connection.release()
            self._pool.recycle(buffers)   # written (or lost): the pool's buffers among them (a shaped link's) go back
            return True
        finally:
            self._write_lock.release()

    @property
    def connection(self) -> Connection | None:
        """The connection it writes on, once it has one."""
        return self._connection

    def pending(self) -> int:
        return self._unwritten

    def stop_taking(self) -> None:
        """Refuse every later put (close() will follow): from now on a sender finds another channel."""
        with self._lock:
            self._closing = True

    def close(self, timeout: float) -> bool:
        """Send what is queued, say bye and wait up to `timeout`; False if it did not finish."""
        self.stop_taking()
        self._queue.put(None)
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _write(self, connection: Connection, buffers: Buffers) -> None:
        connection.write(buffers)
        with self._lock:
            self._unwritten -= 1
        self._pool.recycle(buffers)

    def _fail(self, connection: Connection, exc: Exception, in_flight: int) -> None:
        self._end(TransportError(f"connection from node '{self.node}' to peer '{self.peer}' at "
                                 f"{connection.where} failed: {exc}"), in_flight)

    def _end(self, error: TransportError, in_flight: int = 0) -> None:
        """The channel is over: drop what is queued; keep `error` for the owner unless nothing was lost."""
        with self._lock:
            if self.finished:
                return
            dropped = in_flight
            if self._carry is not None:
                self._pool.recycle(self._carry)
                self._carry, dropped = None, dropped + 1
            while True:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is not None and item is not _WAKE:
                    self._pool.recycle(item)
                    dropped += 1
            self._queue.put(None)   # lets the thread end
            quiet = self._closing and not dropped
            if not quiet:
                self.error = error   # before `finished`: an owner that sees the channel over sees why
            self.finished = True
        if quiet:
            log.debug("%s (while closing)", error)
        else:
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
                    if self._carry is not None:   # the rest of the message the caller began
                        carry, self._carry = self._carry, None
                        self._write(connection, carry)
                    if buffers is _WAKE:
                        continue
                    if buffers is None:
                        connection.write(encode_bye())
                        break
                    self._write(connection, buffers)
                buffers = None
            with self._lock:
                self.finished = True
        except (OSError, ValueError) as exc:
            self._fail(connection, exc, int(buffers is not None and buffers is not _WAKE))
        finally:
            connection.release()


#: A queue item that only wakes the thread to write the carry.
_WAKE: Buffers = [b""]


def _has_room(sock: socket.socket) -> bool:
    """Whether the socket's send buffer has room, so a small write will not block."""
    try:
        return bool(select.select([], [sock], [], 0)[1])
    except (OSError, ValueError):
        return False


def _written(buffers: Buffers, sent: int) -> Buffers:
    """The buffers among `buffers` that the first `sent` bytes wrote whole."""
    out, end = [], 0
    for buffer in buffers:
        end += len(buffer)
        if end > sent:
            break
        out.append(buffer)
    return out
