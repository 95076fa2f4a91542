"""Transport over plain sockets (TCP, or TLS with Python's ssl): the fast wire, and nodes that never listen.

Every connection carries messages one way and is authenticated both ways first
(handshake.py). A node with `listen` accepts connections (listener.py); a node without it ("dial-out", a phone
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
from splitpipe.runtime.transport.channel import Channel, Connection, discard
from splitpipe.runtime.transport.handshake import KeyedIdentity, Prover, SharedSecret, dial_handshake
from splitpipe.runtime.transport.identity import Identity
from splitpipe.runtime.transport.inbox import Inbox
from splitpipe.runtime.transport.limits import MAX_CONTROL_BYTES, MAX_TENSORS, CodecError
from splitpipe.runtime.transport.listener import HANDSHAKE_S, Listener
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

__all__ = ["SocketTransport"]

log = logging.getLogger("splitpipe.transport")

def split_address(address: str) -> tuple[str, int]:
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"address '{address}' must be HOST:PORT with a port from 0 to 65535")
    return host.strip("[]"), int(port)


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
        self._connections: set[Connection] = set()
        self._pulled: set[str] = set()                    # peers this dial-out node opened a pull connection to
        self._cond = threading.Condition()
        self._port: int | None = None
        self._started = self._closed = False
        self._stopping = threading.Event()
        self._refusals = RateLimitedLog(log)
        self._progress = Progress()   # bytes in count as a sign of life (progress.py)
        self._listener = Listener(name, self._prover, self._tls[0] if self._tls else None, self._progress,
                                  self._refusals, self._stopping, self._proved, lambda: len(self._connections),
                                  self._admitted)

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
        self._port = self._listener.open(self._listen, *split_address(self._listen))
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
                if stale is not None:
                    stale.stop_taking()   # now, not at close below: a put meanwhile would reach the old process
                self._peers.pop(name, None)
            channel = self._channels.get(name)
            if channel is not None and address and self._peers.get(name, address) != address:
                raise TransportError(f"peer '{name}' is already reached at {self._peers[name]}; "
                                     f"cannot move it to {address}")
            if address:
                self._peers[name] = address
            else:
                self._known.add(name)
        if moved:
            self._shaper.forget_failure(name)
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
            self._put(peer, channel, buffers, nbytes < JOIN_BELOW)
            return
        buffers = self._pool.snapshot(buffers)   # delivered to the channel later: the snapshot is taken now
        try:
            self._shaper.send(peer, nbytes, lambda: self._put(peer, channel, buffers, nbytes < JOIN_BELOW))
        except Exception:
            self._pool.recycle(buffers)   # not sent: an earlier failure is reported instead
            raise

    def send_control(self, peer: str, body: dict) -> None:
        buffers = encode_control(body, self._max_control_bytes)
        self._put(peer, self._channel(peer), buffers, len(buffers[0]) < JOIN_BELOW)

    def _put(self, peer: str, channel: Channel, buffers: list[memoryview | bytes], small: bool) -> None:
        """Hand a message to `channel`, found without the lock; if it began closing since (close(), the peer
        moved), to the channel the peer has now: the message goes out or this raises, never dropped unsaid."""
        try:
            if channel.put(buffers, small) or self._channel(peer).put(buffers, small):   # _channel raises if closed
                return
            raise TransportError(f"node '{self.name}' could not send to peer '{peer}': its channel closed twice "
                                 "while the message was handed over (is the peer being moved again and again?)")
        except TransportError:
            self._pool.recycle(buffers)   # not taken: the pool's snapshots among them go back
            raise

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
            discard(connection, sock)
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
        """Hold `connection` among this node's (released at close); forgotten when it is released."""
        release = connection.on_release   # the listener's count of it, for one a peer opened

        def forget(conn: Connection) -> None:
            with self._cond:
                self._connections.discard(conn)
                if conn.mode == "pull" and conn.peer in self._pulled and self._listen is None:
                    self._pulled.discard(conn.peer)
            release(conn)
        connection.on_release = forget
        with self._cond:
            self._connections.add(connection)
            if self._closed:
                connection.release()

    def open_connections(self) -> dict[str, int]:
        """Authenticated connections peers opened to this node, per peer (for tests and diagnostics)."""
        return self._listener.open_connections()

    def _admitted(self, connection: Connection) -> None:
        """A connection a peer opened proved itself (listener.py): read it (push) or offer it to its channel (pull)."""
        self._track(connection)
        if connection.mode == "push":
            self._read(connection)
            return
        with self._cond:
            self._offered.setdefault(connection.peer, []).append(connection)
            self._cond.notify_all()

    def _proved(self, peer: str) -> None:
        with self._cond:
            self._known.add(peer)

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

