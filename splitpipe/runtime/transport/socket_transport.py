"""Transport over plain sockets (TCP, or TLS with Python's ssl): the fast wire, and nodes that never listen.

Every connection carries messages one way and is authenticated both ways first
(handshake.py). A node with `listen` accepts connections; a node without it ("dial-out", a phone
behind NAT) dials every peer twice: a "push" connection it writes to, opened on the first send,
and a "pull" connection, opened as soon as it knows the peer, on which the peer writes to it. So
every link can be opened from either end. Messages are framed by wire.py and moved by
sockio.py: the caller writes what the kernel takes at once straight from the tensors (one
`sendmsg`), a snapshot of the rest goes to the channel's thread, and tensor bytes are read from
the socket straight into their own buffer. On plain TCP the thread in receive() reads a message
that is all in itself; the connection's reader thread reads the rest (inbox.py).

    sender                               receiver
    send() -> [shaper] -> Channel: caller's sendmsg, rest snapshot -> thread -> socket -> receive() reads it
                                                                                  `-> reader thread -> inbox -> receive()
"""

from __future__ import annotations

import logging
import socket
import ssl
import threading
import time
from collections import Counter
from collections.abc import Collection, Mapping
from dataclasses import replace
from typing import Any, cast

from splitpipe.network import LinkSpec
from splitpipe.runtime.shaping import NodeShaper
from splitpipe.runtime.transport.base import (
    Message,
    Payload,
    Transport,
    TransportError,
    check_message,
    payload_nbytes,
)
from splitpipe.runtime.transport.channel import Channel, Connection
from splitpipe.runtime.transport.handshake import (
    HandshakeError,
    KeyedIdentity,
    Prover,
    SharedSecret,
    accept_handshake,
    dial_handshake,
)
from splitpipe.runtime.transport.identity import Identity
from splitpipe.runtime.transport.inbox import Inbox
from splitpipe.runtime.transport.limits import MAX_CONTROL_BYTES, MAX_TENSORS, CodecError
from splitpipe.runtime.transport.progress import Progress
from splitpipe.runtime.transport.ratelimit import RateLimitedLog
from splitpipe.runtime.transport.redial import MAX_WAIT_S, redial
from splitpipe.runtime.transport.security import TlsConfig
from splitpipe.runtime.transport.sockio import READ_BUFFER
from splitpipe.runtime.transport.wire import (
    JOIN_BELOW,
    Ended,
    Pool,
    encode_bye,
    encode_control,
    encode_data,
    read_message,
)
from splitpipe.schedules.ir import Tag

__all__ = ["SocketTransport", "MAX_CONNECTIONS_PER_PEER", "MAX_HANDSHAKES", "MAX_CONNECTIONS"]

log = logging.getLogger("splitpipe.transport")

#: Connections one authenticated node may hold open each way: its own, and a new one while a broken one winds down.
MAX_CONNECTIONS_PER_PEER = 4
#: Connections still in their handshake (unauthenticated) at once; more are closed at accept.
MAX_HANDSHAKES = 64
#: Authenticated connections a node holds at once.
MAX_CONNECTIONS = 1024
#: Seconds a new connection has to finish its TLS and splitpipe handshakes.
HANDSHAKE_S = 10.0


def split_address(address: str) -> tuple[str, int]:
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"address '{address}' must be HOST:PORT with a port from 0 to 65535")
    return host.strip("[]"), int(port)


def _certificate_names(sock: socket.socket) -> set[str] | None:
    """The names (common name and alternative names) of the peer's TLS certificate; None without TLS."""
    if not isinstance(sock, ssl.SSLSocket):
        return None
    cert = cast(dict[str, Any], sock.getpeercert() or {})   # typeshed: a union of str and nested tuples
    names = {str(value) for rdn in cert.get("subject", ()) for key, value in rdn if key == "commonName"}
    return names | {str(value) for kind, value in cert.get("subjectAltName", ()) if kind == "DNS"}


def _contexts(tls: TlsConfig) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """(server, client) contexts for mutual TLS: both ends show a certificate signed by `tls.ca`."""
    tls.read()   # names an unreadable file in one line
    server, client = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER), ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    try:
        for context in (server, client):
            context.load_cert_chain(str(tls.cert), str(tls.key))
            context.load_verify_locations(cafile=str(tls.ca))
    except ssl.SSLError as exc:
        raise ValueError(f"TLS files {tls.cert}, {tls.key}, {tls.ca} do not make a key pair and CA: {exc}") from None
    server.verify_mode = ssl.CERT_REQUIRED
    return server, client


class SocketTransport(Transport):
    """One node's socket endpoint: a listener (unless `listen` is None) and a channel per peer.

    `listen` is "HOST:PORT" (port 0 picks a free one; see .port / .address after start()) or
    None: then this node never listens and dials its peers instead. `peers` maps node names to
    "host:port" ("" or absent: the peer dials in) and grows with add_peer. `links[(src, dst)]`
    shapes the links this node holds (splitpipe/linkbook.py): those it sends on, and for a node in
    `radios` its downlink, on which incoming data messages wait their turn. Connections are authenticated by HMAC under `secret` over fresh
    challenges or, with `identity`, by Ed25519 signatures; with `tls`, by mutual TLS as well.
    Received messages over `max_message_bytes` or `max_tensors` tensors are dropped; control bodies
    over `max_control_bytes` (default: the fixed limit, or `max_message_bytes` if smaller) too.
    `connect_timeout` bounds dialling a peer (or waiting for one that dials in) and flushing at close().
    """

    def __init__(self, name: str, listen: str | None, peers: Mapping[str, str], secret: bytes | None,
                 links: Mapping[tuple[str, str], LinkSpec] | None = None, tls: TlsConfig | None = None,
                 max_message_bytes: int = 1 << 30, connect_timeout: float = 30.0,
                 max_tensors: int = MAX_TENSORS, identity: Identity | None = None,
                 radios: Collection[str] = (), max_control_bytes: int | None = None) -> None:
        if not name:
            raise ValueError("node name must not be empty")
        if identity is None and (not isinstance(secret, bytes) or not secret):
            raise ValueError(f"node '{name}' needs a non-empty shared secret (bytes)")
        if identity is not None and identity.name != name:
            raise ValueError(f"node '{name}' was given the identity of node '{identity.name}'")
        for what, value in (("max_message_bytes", max_message_bytes), ("connect_timeout", connect_timeout)):
            if not value > 0:
                raise ValueError(f"{what} must be positive, got {value}")
        if listen is not None:
            split_address(listen)
        for address in peers.values():
            if address:
                split_address(address)
        self.name, self._listen = name, listen
        self._prover: Prover = KeyedIdentity(identity) if identity is not None else SharedSecret(name, secret or b"")
        self._tls = _contexts(tls) if tls is not None else None
        self._peers = {peer: address for peer, address in peers.items() if address}
        self._max_message_bytes, self._max_tensors = max_message_bytes, max_tensors
        self._max_control_bytes = min(MAX_CONTROL_BYTES, max_message_bytes) if max_control_bytes is None else max_control_bytes
        self._connect_timeout = connect_timeout
        self._shaper = NodeShaper(name, links, radios)
        self._pool = Pool()
        self._inbox = Inbox(direct=self._tls is None)   # receive() reads plain-TCP messages itself (inbox.py)
        self._channels: dict[str, Channel] = {}
        self._offered: dict[str, list[Connection]] = {}   # pull connections peers opened, for channels to them
        self._known: set[str] = set()                     # peers that proved themselves on a connection to us
        self._moves: Counter[str] = Counter()             # restarts per peer (add_peer moved=True)
        self._open: Counter[tuple[str, str]] = Counter()  # authenticated connections per (peer, mode)
        self._connections: set[Connection] = set()
        self._handshakes = 0
        self._pulled: set[str] = set()                    # peers this dial-out node opened a pull connection to
        self._cond = threading.Condition()
        self._listener: socket.socket | None = None
        self._port: int | None = None
        self._started = self._closed = False
        self._stopping = threading.Event()
        self._refusals = RateLimitedLog(log)
        self._progress = Progress()   # bytes in count as a sign of life (progress.py)

    # -- where it is reached --------------------------------------------------------------
    @property
    def listens(self) -> bool:
        return self._listen is not None

    @property
    def port(self) -> int:
        if self._port is None:
            raise TransportError(f"transport of node '{self.name}' is not started"
                                 if self.listens else f"node '{self.name}' does not listen (it dials out)")
        return self._port

    @property
    def address(self) -> str:
        """HOST:PORT where peers reach this node; "" for a node that does not listen (peers wait for it to dial)."""
        if self._listen is None:
            return ""
        return f"{self._listen.rpartition(':')[0]}:{self.port}"

    def start(self) -> None:
        """Listen for peers (or, dialling out, open a pull connection to every peer known so far)."""
        if self._closed:
            raise TransportError(f"transport of node '{self.name}' is closed")
        if self._started:
            raise TransportError(f"transport of node '{self.name}' is already started")
        self._started = True
        if self._listen is None:
            for peer in list(self._peers):
                self._pull(peer)
            return
        host, port = split_address(self._listen)
        try:
            listener = socket.create_server((host, port), family=socket.AF_INET6 if ":" in host else socket.AF_INET,
                                            backlog=128)
        except OSError as exc:
            raise TransportError(f"node '{self.name}' cannot listen on '{self._listen}': port {port} is "
                                 f"{'taken' if 'in use' in str(exc) else exc.strerror}; pick another with --listen") \
                from None
        self._listener, self._port = listener, listener.getsockname()[1]
        threading.Thread(target=self._accept_loop, name=f"splitpipe-accept-{self.name}", daemon=True).start()
        log.info("node '%s' listening on %s%s", self.name, self.address, " with mutual TLS" if self._tls else "")

    def add_peer(self, name: str, address: str, *, moved: bool = False) -> None:
        """Make `name` reachable at `address` ("host:port"; "" = it dials in); a dial-out node dials it now.
        `moved`: it restarted, perhaps elsewhere; the channel to its old process is dropped."""
        if address:
            split_address(address)
        stale = None
        with self._cond:
            if moved:
                self._moves[name] += 1   # a channel still waiting for its old process takes no connection now
                self._cond.notify_all()
                stale = self._channels.pop(name, None)
                if stale is not None and not self._peers.get(name) and not self._offered.get(name) \
                        and _alive(stale.connection):   # it took the connection the new process dialled in on
                    self._channels[name], stale = stale, None
                self._peers.pop(name, None)
            channel = self._channels.get(name)
            if channel is not None and address and self._peers.get(name, address) != address:
                raise TransportError(f"peer '{name}' is already reached at {self._peers[name]}; "
                                     f"cannot move it to {address}")
            if address:
                self._peers[name] = address
            else:
                self._known.add(name)
        if stale is not None:
            stale.close(0.0)
        if address and self._listen is None and self._started:
            self._pull(name)

    # -- sending ----------------------------------------------------------------------------
    def _channel(self, peer: str) -> Channel:
        with self._cond:
            if self._closed:
                raise TransportError(f"transport of node '{self.name}' is closed")
            channel = self._channels.get(peer)
            if channel is not None and (channel.error is not None or channel.finished):
                del self._channels[peer]   # report a failure once; the next send opens a new channel
                if channel.error is not None:
                    raise channel.error
                channel = None
            if channel is None:
                if peer not in self._peers and peer not in self._known:
                    known = ", ".join(sorted({*self._peers, *self._known})) or "none"
                    raise TransportError(f"unknown peer '{peer}' for node '{self.name}'; known peers: {known}")
                moves = self._moves[peer]
                channel = Channel(self.name, peer, lambda: self._connect(peer, moves), self._pool)
                self._channels[peer] = channel
            return channel

    def send(self, peer: str, tag: Tag, payload: Payload) -> None:
        check_message(tag, payload)
        channel = self._channels.get(peer)   # without the lock while it works (most sends); else _channel says why
        if channel is None or channel.error is not None or channel.finished or self._closed:
            channel = self._channel(peer)
        buffers, nbytes = encode_data(tag, payload)   # views of the payload: the channel snapshots what it keeps
        if nbytes > self._max_message_bytes:
            raise ValueError(f"payload {tag} of {nbytes} bytes exceeds max_message_bytes={self._max_message_bytes}")
        if not self._shaper.delays(peer):
            channel.put(buffers, small=nbytes < JOIN_BELOW)
            return
        buffers = self._pool.snapshot(buffers)   # delivered to the channel later: the snapshot is taken now
        self._shaper.send(peer, nbytes, lambda: channel.put(buffers, small=nbytes < JOIN_BELOW))

    def send_control(self, peer: str, body: dict) -> None:
        buffers = encode_control(body, self._max_control_bytes)
        self._channel(peer).put(buffers, small=len(buffers[0]) < JOIN_BELOW)

    def heard(self, peer: str) -> float | None:
        return self._progress.heard(peer)

    def receive(self, timeout: float | None = None) -> Message | None:
        if self._closed:
            raise TransportError(f"transport of node '{self.name}' is closed")
        return self._inbox.get(timeout, self._read_one)

    # -- connections ------------------------------------------------------------------------
    def _connect(self, peer: str, moves: int) -> Connection:
        """A connection to write to `peer` on: dialled ("push"), or the newest one it dialled to us ("pull");
        none once the peer restarted (`moves` is its restart count when the channel began)."""
        address = self._peers.get(peer)
        if address:
            return self._dial(peer, address, "push")
        deadline = time.monotonic() + self._connect_timeout
        with self._cond:
            while not self._offered.get(peer):
                if self._moves[peer] != moves:
                    raise TransportError(f"peer '{peer}' restarted; the channel to its old process is dropped")
                left = deadline - time.monotonic()
                if self._closed or left <= 0:
                    raise TransportError(f"peer '{peer}' does not listen and did not dial node '{self.name}' "
                                         f"within {self._connect_timeout:g} s")
                self._cond.wait(left)
            return self._offered[peer].pop()

    def _dial(self, peer: str, address: str, mode: str, timeout: float | None = None) -> Connection:
        host, port = split_address(address)
        started = time.monotonic()
        deadline = started + (self._connect_timeout if timeout is None else timeout)
        while True:   # the peer may not listen yet: retry until the deadline, as gRPC's channel does
            try:
                sock = socket.create_connection((host, port), timeout=max(0.05, deadline - time.monotonic()))
                break
            except OSError as exc:
                if time.monotonic() + 0.1 >= deadline or self._stopping.is_set():
                    raise TransportError(f"node '{self.name}' could not connect to peer '{peer}' at {address} "
                                         f"within {deadline - started:.3g} s: {exc.strerror or exc}") from None
                time.sleep(0.1)
        connection = None
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.settimeout(min(HANDSHAKE_S, self._connect_timeout))
            if self._tls is not None:
                sock = self._tls[1].wrap_socket(sock, server_hostname=peer)   # its certificate must name it
            connection = Connection(sock, self._progress.reader(sock, READ_BUFFER), peer, mode, address)
            dial_handshake(connection.reader, connection.write, self._prover, peer, mode)
            self._progress.watch(connection.reader, peer)
            sock.settimeout(None)
        except (OSError, ValueError) as exc:
            _discard(connection, sock)
            raise TransportError(f"node '{self.name}' could not connect to peer '{peer}' at {address}: {exc}") \
                from None
        return connection

    def _pull(self, peer: str) -> None:
        """Dial-out: open the connection on which `peer` writes to this node, in the background;
        dial it again (redial.py) whenever it breaks, reporting it broken only if that fails."""
        with self._cond:
            if peer in self._pulled:
                return
            self._pulled.add(peer)

        def run() -> None:
            try:
                connection: Connection | None = self._dial(peer, self._peers[peer], "pull")
            except TransportError as exc:
                if not self._stopping.is_set():
                    log.error("%s; it cannot send to this node", exc)
                with self._cond:
                    self._pulled.discard(peer)
                return
            while connection is not None:
                self._track(connection)
                if self._read(connection, announce=False) or not self._repull(peer):
                    return
                log.warning("node '%s': connection on which node '%s' writes to it broke; dialling again",
                            self.name, peer)
                connection, why = redial(lambda left: self._redial(peer, left), self._connect_timeout, self._stopping)
                if connection is None:
                    with self._cond:
                        self._pulled.discard(peer)
                    if not self._stopping.is_set():
                        log.error("%s; it cannot send to this node", why)
                        self._inbox.put(Message(peer, None, None, {"type": "broken"}, time.time()))

        threading.Thread(target=run, name=f"splitpipe-pull-{self.name}-{peer}", daemon=True).start()

    def _redial(self, peer: str, left: float) -> Connection:
        address = self._peers.get(peer)
        if not address:
            raise TransportError(f"node '{self.name}' no longer knows where peer '{peer}' listens")
        return self._dial(peer, address, "pull", min(left, MAX_WAIT_S))

    def _repull(self, peer: str) -> bool:
        """After a pull connection broke: whether this thread dials again (not if closing or one was opened since)."""
        with self._cond:
            if self._closed or self._stopping.is_set() or peer in self._pulled or peer not in self._peers:
                return False
            self._pulled.add(peer)
            return True

    def _track(self, connection: Connection) -> None:
        def forget(conn: Connection) -> None:
            with self._cond:
                self._connections.discard(conn)
                if conn.mode == "pull" and conn.peer in self._pulled and self._listen is None:
                    self._pulled.discard(conn.peer)
        connection.on_release = forget
        with self._cond:
            self._connections.add(connection)
            if self._closed:
                connection.release()

    def _accept_loop(self) -> None:
        assert self._listener is not None
        while not self._stopping.is_set():
            try:
                sock, address = self._listener.accept()
            except OSError:
                if self._stopping.is_set():
                    return
                time.sleep(0.01)   # out of file descriptors, say: do not spin
                continue
            where = f"{address[0]}:{address[1]}"
            with self._cond:
                full = self._handshakes >= MAX_HANDSHAKES
                self._handshakes += not full
            if full:
                self._refusals.warning(address[0], "node '%s' refused a connection from %s: %d others are still in "
                                       "their handshake", self.name, where, MAX_HANDSHAKES)
                sock.close()
                continue
            threading.Thread(target=self._admit, args=(sock, where), name=f"splitpipe-admit-{self.name}",
                             daemon=True).start()

    def _admit(self, sock: socket.socket, where: str) -> None:
        """Handshake with a new connection; then read it (push) or offer it to the channel to its node (pull)."""
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
                          "or port check)", self.name, where)
                sock.close()
                return
            if self._tls is not None:
                sock = self._tls[0].wrap_socket(sock, server_side=True)
            connection = Connection(sock, self._progress.reader(sock, READ_BUFFER), "?", "?", where)
            peer, mode = accept_handshake(connection.reader, connection.write, self._prover, admit)
            self._progress.watch(connection.reader, peer)
            sock.settimeout(None)
        except (HandshakeError, OSError, ValueError) as exc:
            claimed = exc.claimed if isinstance(exc, HandshakeError) else ""
            self._refusals.warning(where.rpartition(":")[0], "node '%s' refused a connection from %s%s: %s",
                                   self.name, where, f" claiming to be node '{claimed[:80]}'" if claimed else "", exc)
            _discard(connection, sock)
            for key in reserved:
                self._unreserve(*key)
            return
        finally:
            with self._cond:
                self._handshakes -= 1
        connection.peer, connection.mode = peer, mode
        self._track(connection)
        release = connection.on_release

        def unreserve(conn: Connection) -> None:
            release(conn)
            self._unreserve(conn.peer, conn.mode)
        connection.on_release = unreserve
        log.debug("node '%s' accepted a %s connection from node '%s' at %s", self.name, mode, peer, where)
        if mode == "push":
            self._read(connection)
            return
        with self._cond:
            self._offered.setdefault(peer, []).append(connection)
            self._cond.notify_all()

    def _reserve(self, peer: str, mode: str) -> str | None:
        """Count a connection that proved itself, unless its node already holds too many: then why not."""
        with self._cond:
            if self._open[(peer, mode)] >= MAX_CONNECTIONS_PER_PEER:
                return f"node '{peer}' already has {MAX_CONNECTIONS_PER_PEER} {mode} connections open"
            if len(self._connections) >= MAX_CONNECTIONS:
                return f"this node already holds {MAX_CONNECTIONS} connections"
            self._open[(peer, mode)] += 1
            self._known.add(peer)
        return None

    def _unreserve(self, peer: str, mode: str) -> None:
        with self._cond:
            self._open[(peer, mode)] -= 1
            if self._open[(peer, mode)] <= 0:
                del self._open[(peer, mode)]

    def open_connections(self) -> dict[str, int]:
        """Authenticated connections peers opened to this node, per peer (for tests and diagnostics)."""
        with self._cond:
            out: Counter[str] = Counter()
            for (peer, _), n in self._open.items():
                out[peer] += n
            return dict(out)

    def _read(self, connection: Connection, announce: bool = True) -> bool:
        """Deliver what `connection` carries until it ends; whether it ended with bye. An end without bye
        is the peer's death: delivered as "broken" (unless not `announce`: the caller dials again).
        On plain TCP the thread in receive() reads the messages that are all in itself (inbox.py);
        this thread reads the rest, and everything while nobody waits in receive()."""
        clean, direct, inbox = False, self._inbox.direct, self._inbox
        if direct:
            inbox.add(connection)
        try:
            while True:
                if direct:
                    inbox.wait_turn(connection)
                with connection.read_lock:
                    if direct and not connection.handed and not inbox.has_bytes(connection):
                        continue   # the thread in receive() read it
                    connection.handed = False
                    message = self._read_one(connection)
                    if message is not None:
                        inbox.put(message)
                if direct:
                    inbox.poke()   # the thread in receive() may look at this connection again
        except Ended as end:
            clean = end.clean
        except (OSError, ValueError):
            pass
        finally:
            if direct:
                inbox.discard(connection)
            connection.release()
        if not clean and not self._stopping.is_set():   # its process or the network died: say so at once, in order
            log.warning("node '%s': connection from node '%s' at %s ended without a goodbye after %d message(s)",
                        self.name, connection.peer, connection.where, connection.delivered)
            if announce:
                self._inbox.put(Message(connection.peer, None, None, {"type": "broken"}, time.time()))
        return clean

    def _read_one(self, connection: Connection) -> Message | None:
        """Read the next message off `connection` (its read lock held): returned when it is to be delivered
        now (the caller queues or returns it); None when it was dropped as malformed or went elsewhere (_arrive)."""
        item = read_message(connection.reader, self._max_message_bytes, self._max_control_bytes, self._max_tensors)
        if isinstance(item, CodecError):
            self._refusals.warning(connection.peer, "node '%s' dropped a malformed message from node '%s' "
                                   "at %s: %s", self.name, connection.peer, connection.where, item)
            return None
        connection.delivered += 1
        return self._arrive(Message(connection.peer, item.tag, item.payload, item.control, time.time()))

    def _arrive(self, message: Message) -> Message | None:
        """A message is in off the wire: returned if it is to be delivered now; None if on_control took it
        or this node's downlink radio holds a data message longer (it is queued when due)."""
        if message.is_control:
            return None if self._handled(message) else message
        if message.payload is None or self._stopping.is_set() or not self._shaper.delays(message.src):
            return message
        self._shaper.receive(message.src, payload_nbytes(message.payload),
                             lambda: self._inbox.put(replace(message, received_at=time.time())))
        return None

    # -- the end ----------------------------------------------------------------------------
    def close(self) -> None:
        """Deliver what was sent (within connect_timeout), say bye on every connection and stop."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            channels = list(self._channels.values())
            self._cond.notify_all()
        deadline = time.monotonic() + self._connect_timeout
        self._shaper.close(timeout=self._connect_timeout)
        for channel in channels:
            if not channel.close(max(0.0, deadline - time.monotonic())):
                log.warning("node '%s': connection to peer '%s' did not finish within %g s",
                            self.name, channel.peer, self._connect_timeout)
        self._stopping.set()
        if self._listener is not None:
            self._listener.close()
        with self._cond:
            offered = [c for conns in self._offered.values() for c in conns]
            self._offered.clear()
            rest = list(self._connections)
        for connection in offered:   # pull connections nobody wrote to: end them politely
            try:
                connection.write(encode_bye())
            except OSError:
                pass
        for connection in {*offered, *rest}:
            connection.release()


def _closed_unopened(sock: socket.socket) -> bool:
    """True when the other end closed without sending a byte: a probe (coordinator's `address.probe`, a port check).

    Such a connection never started a handshake, so it is no refusal worth a warning; one that
    sends anything, even a byte, and then stalls or stops is still refused out loud.
    """
    return sock.recv(1, socket.MSG_PEEK) == b""   # OSError (reset, stalled past the timeout): refused out loud


def _alive(connection: Connection | None) -> bool:
    """Whether the other end of `connection` is still open (a killed process's end reads as closed or reset)."""
    if connection is None:
        return False
    try:
        return socket.socket.recv(connection.sock, 1, socket.MSG_PEEK | socket.MSG_DONTWAIT) != b""
    except BlockingIOError:
        return True
    except (OSError, ValueError):
        return False


def _discard(connection: Connection | None, sock: socket.socket) -> None:
    """Close a connection that never got going (its reader holds the socket open too)."""
    if connection is not None:
        connection.release()
    else:
        sock.close()
