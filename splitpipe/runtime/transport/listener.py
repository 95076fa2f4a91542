"""The socket transport's listening side: who may open a connection to a node, and how many.

A node that listens is open to anyone who reaches its port, so what a stranger can make it
hold is bounded here, before and after the handshake (handshake.py) proves who dialled:
MAX_HANDSHAKES unproved connections at once, each cut after HANDSHAKE_S; then per node and
direction MAX_CONNECTIONS_PER_PEER (its own and a new one while a broken one winds down) and
MAX_CONNECTIONS in all. Refusals are logged at a bounded rate per address. A connection that
proved itself goes to the transport (`admitted`), which reads it (push) or offers it to the
channel to its node (pull).
"""

from __future__ import annotations

import logging
import socket
import ssl
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any, cast

from splitpipe.runtime.transport.base import TransportError
from splitpipe.runtime.transport.channel import Connection, discard
from splitpipe.runtime.transport.handshake import HandshakeError, Prover, accept_handshake
from splitpipe.runtime.transport.progress import Progress
from splitpipe.runtime.transport.ratelimit import RateLimitedLog
from splitpipe.runtime.transport.sockio import READ_BUFFER

__all__ = ["Listener", "MAX_CONNECTIONS_PER_PEER", "MAX_HANDSHAKES", "MAX_CONNECTIONS", "HANDSHAKE_S"]

log = logging.getLogger("splitpipe.transport")

#: Connections one authenticated node may hold open each way: its own, and a new one while a broken one winds down.
MAX_CONNECTIONS_PER_PEER = 4
#: Connections still in their handshake (unauthenticated) at once; more are closed at accept.
MAX_HANDSHAKES = 64
#: Authenticated connections a node holds at once.
MAX_CONNECTIONS = 1024
#: Seconds a new connection has to finish its TLS and splitpipe handshakes.
HANDSHAKE_S = 10.0


class Listener:
    """Accepts connections to node `node` on one socket, runs their handshakes and counts them.

    `context` is the TLS server context (None: plain TCP). `proved(peer)` is called once a
    connection proved it comes from `peer` and is admitted, before the dialler hears so;
    `holding()` says how many connections the node holds in all; `admitted(connection)` takes
    each admitted connection (on the thread that accepted it: it may read it to its end).
    """

    def __init__(self, node: str, prover: Prover, context: ssl.SSLContext | None, progress: Progress,
                 refusals: RateLimitedLog, stopping: threading.Event, proved: Callable[[str], None],
                 holding: Callable[[], int], admitted: Callable[[Connection], None]) -> None:
        self.node, self._prover, self._context, self._progress = node, prover, context, progress
        self._refusals, self._stopping = refusals, stopping
        self._proved, self._holding, self._admitted = proved, holding, admitted
        self._lock = threading.Lock()
        self._open: Counter[tuple[str, str]] = Counter()   # authenticated connections per (peer, mode)
        self.handshakes = 0                                # connections in their handshake now
        self.sock: socket.socket | None = None

    def open(self, listen: str, host: str, port: int) -> int:
        """Listen on host:port (`listen` as the user wrote it, for messages) and accept in a thread; the port."""
        try:
            self.sock = socket.create_server((host, port), family=socket.AF_INET6 if ":" in host else socket.AF_INET,
                                             backlog=128)
        except OSError as exc:
            raise TransportError(f"node '{self.node}' cannot listen on '{listen}': port {port} is "
                                 f"{'taken' if 'in use' in str(exc) else exc.strerror}; pick another with --listen") \
                from None
        threading.Thread(target=self._accept_loop, name=f"splitpipe-accept-{self.node}", daemon=True).start()
        return int(self.sock.getsockname()[1])

    def close(self) -> None:
        """Stop accepting (the transport's `stopping` is set first, so the accept loop ends quietly)."""
        if self.sock is not None:
            self.sock.close()

    def open_connections(self) -> dict[str, int]:
        """Authenticated connections peers opened to this node, per peer."""
        with self._lock:
            out: Counter[str] = Counter()
            for (peer, _), n in self._open.items():
                out[peer] += n
            return dict(out)

    def _accept_loop(self) -> None:
        assert self.sock is not None
        while not self._stopping.is_set():
            try:
                sock, address = self.sock.accept()
            except OSError:
                if self._stopping.is_set():
                    return
                time.sleep(0.01)   # out of file descriptors, say: do not spin
                continue
            where = f"{address[0]}:{address[1]}"
            with self._lock:
                full = self.handshakes >= MAX_HANDSHAKES
                self.handshakes += not full
            if full:
                self._refusals.warning(address[0], "node '%s' refused a connection from %s: %d others are still in "
                                       "their handshake", self.node, where, MAX_HANDSHAKES)
                sock.close()
                continue
            threading.Thread(target=self._admit, args=(sock, where), name=f"splitpipe-admit-{self.node}",
                             daemon=True).start()

    def _admit(self, sock: socket.socket, where: str) -> None:
        """Handshake with a new connection; then hand it to the transport, counted until it is released."""
        reserved: list[tuple[str, str]] = []
        connection: Connection | None = None

        def admit(peer: str, mode: str) -> str | None:
            names = _certificate_names(sock)
            if names is not None and peer not in names:
                return f"its TLS certificate is for {', '.join(sorted(names))[:120]}, not for that node"
            refused = self._reserve(peer, mode)
            if refused is None:
                reserved.append((peer, mode))
            return refused

        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.settimeout(HANDSHAKE_S)
            if _closed_unopened(sock):
                log.debug("node '%s': a connection from %s closed before its first byte (a reachability probe "
                          "or port check)", self.node, where)
                sock.close()
                return
            if self._context is not None:
                sock = self._context.wrap_socket(sock, server_side=True)
            connection = Connection(sock, self._progress.reader(sock, READ_BUFFER), "?", "?", where)
            peer, mode = accept_handshake(connection.reader, connection.write, self._prover, admit)
            self._progress.watch(connection.reader, peer)
            sock.settimeout(None)
        except (HandshakeError, OSError, ValueError) as exc:
            claimed = exc.claimed if isinstance(exc, HandshakeError) else ""
            self._refusals.warning(where.rpartition(":")[0], "node '%s' refused a connection from %s%s: %s",
                                   self.node, where, f" claiming to be node '{claimed[:80]}'" if claimed else "", exc)
            discard(connection, sock)
            for key in reserved:
                self._unreserve(*key)
            return
        finally:
            with self._lock:
                self.handshakes -= 1
        connection.peer, connection.mode = peer, mode
        connection.on_release = lambda conn: self._unreserve(conn.peer, conn.mode)
        log.debug("node '%s' accepted a %s connection from node '%s' at %s", self.node, mode, peer, where)
        self._admitted(connection)

    def _reserve(self, peer: str, mode: str) -> str | None:
        """Count a connection that proved itself, unless its node already holds too many: then why not."""
        with self._lock:
            if self._open[(peer, mode)] >= MAX_CONNECTIONS_PER_PEER:
                return f"node '{peer}' already has {MAX_CONNECTIONS_PER_PEER} {mode} connections open"
            if self._holding() >= MAX_CONNECTIONS:
                return f"this node already holds {MAX_CONNECTIONS} connections"
            self._open[(peer, mode)] += 1
        self._proved(peer)
        return None

    def _unreserve(self, peer: str, mode: str) -> None:
        with self._lock:
            self._open[(peer, mode)] -= 1
            if self._open[(peer, mode)] <= 0:
                del self._open[(peer, mode)]


def _certificate_names(sock: socket.socket) -> set[str] | None:
    """The names (common name and alternative names) of the peer's TLS certificate; None without TLS."""
    if not isinstance(sock, ssl.SSLSocket):
        return None
    cert = cast(dict[str, Any], sock.getpeercert() or {})   # typeshed: a union of str and nested tuples
    names = {str(value) for rdn in cert.get("subject", ()) for key, value in rdn if key == "commonName"}
    return names | {str(value) for kind, value in cert.get("subjectAltName", ()) if kind == "DNS"}


def _closed_unopened(sock: socket.socket) -> bool:
    """True when the other end closed without sending a byte: a probe (coordinator's `address.probe`, a port check).

    Such a connection never started a handshake, so it is no refusal worth a warning; one that
    sends anything, even a byte, and then stalls or stops is still refused out loud.
    """
    return sock.recv(1, socket.MSG_PEEK) == b""   # OSError (reset, stalled past the timeout): refused out loud
