"""Transport over gRPC: one long-lived client stream per (sender, receiver) pair, opened on first send."""

from __future__ import annotations

import errno
import logging
import queue
import socket
import threading
import time
from collections.abc import Collection, Mapping
from concurrent import futures
from dataclasses import replace

import grpc

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
from splitpipe.runtime.transport.codec import MAX_CONTROL_BYTES, control_to_frames, payload_to_frames
from splitpipe.runtime.transport.identity import Identity
from splitpipe.runtime.transport.limits import MAX_TENSORS
from splitpipe.runtime.transport.proto.splitpipe_pb2 import Frame as ProtoFrame
from splitpipe.runtime.transport.proto.splitpipe_pb2_grpc import add_LinkServicer_to_server
from splitpipe.runtime.transport.security import (
    NODE_KEY,
    TlsConfig,
    auth_metadata,
    channel_credentials,
    server_credentials,
)
from splitpipe.runtime.transport.sender import PeerSender
from splitpipe.runtime.transport.servicer import LinkServicer
from splitpipe.schedules.ir import Tag

__all__ = ["GrpcTransport", "grpc_options"]

log = logging.getLogger("splitpipe.transport")

#: Room above chunk_bytes in a frame for the header (a state dict lists every key, dtype and shape).
FRAME_HEADROOM = 4 << 20
#: Threads serving incoming streams; each open stream holds one for its lifetime. Streams past this
#: are refused at once (RESOURCE_EXHAUSTED), not queued behind the open ones.
MAX_STREAMS = 256
#: Server-only options: few streams per connection (a node opens one), idle connections closed.
SERVER_OPTIONS = [
    ("grpc.so_reuseport", 0),                  # a taken port is an error
    ("grpc.max_concurrent_streams", 8),        # HTTP/2 streams one connection may hold open
    ("grpc.max_connection_idle_ms", 120_000),  # a connection with no stream for 2 min is closed
]


def grpc_options(chunk_bytes: int) -> list[tuple[str, int]]:
    """Channel and server options: frame size limits and keepalive (pings every 30 s, 10 s to answer)."""
    frame_limit = chunk_bytes + FRAME_HEADROOM
    return [
        ("grpc.max_send_message_length", frame_limit),
        ("grpc.max_receive_message_length", frame_limit),
        ("grpc.keepalive_time_ms", 30_000),
        ("grpc.keepalive_timeout_ms", 10_000),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.max_pings_without_data", 0),
        ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
    ]


class GrpcTransport(Transport):
    """One node's gRPC endpoint: a server for incoming streams and a sender per peer.

    `listen` is "HOST:PORT" (port 0 picks a free one; see .port / .address after start()).
    `peers` maps node names to "host:port" and can grow with add_peer. `links[(src, dst)]`
    shapes the links this node holds (splitpipe/linkbook.py): those it sends on, and for a
    node in `radios` its downlink, on which incoming messages wait their turn. Every stream carries this node's name and its HMAC under `secret`, or,
    with `identity`, answers the receiver's challenge with this node's Ed25519 signature;
    with `tls`, channels use mutual TLS as well, and each certificate must name its node (the
    receiver checks the sender's; the sender checks that the peer's names the peer). Reassembled messages larger than
    `max_message_bytes` are refused; payloads travel in chunks of `chunk_bytes` (use the same
    value on every node: it sets the gRPC frame limit). `connect_timeout` bounds connecting to
    a peer and flushing at close(). A received message may carry at most `max_tensors` tensors;
    control bodies at most `max_control_bytes` (default: the fixed limit, or `max_message_bytes` if smaller).
    """

    def __init__(self, name: str, listen: str, peers: Mapping[str, str], secret: bytes | None,
                 links: Mapping[tuple[str, str], LinkSpec] | None = None, tls: TlsConfig | None = None,
                 max_message_bytes: int = 1 << 30, chunk_bytes: int = 4 << 20,
                 connect_timeout: float = 30.0, max_tensors: int = MAX_TENSORS,
                 identity: Identity | None = None, radios: Collection[str] = (),
                 max_control_bytes: int | None = None) -> None:
        if not name:
            raise ValueError("node name must not be empty")
        if identity is None and (not isinstance(secret, bytes) or not secret):
            raise ValueError(f"node '{name}' needs a non-empty shared secret (bytes)")
        if identity is not None and identity.name != name:
            raise ValueError(f"node '{name}' was given the identity of node '{identity.name}'")
        for what, value in (("max_message_bytes", max_message_bytes), ("chunk_bytes", chunk_bytes),
                            ("connect_timeout", connect_timeout)):
            if not value > 0:
                raise ValueError(f"{what} must be positive, got {value}")
        self._split_address(listen)
        self.name, self._listen, self._secret, self._tls, self._identity = name, listen, secret, tls, identity
        self._peers = dict(peers)
        self._max_message_bytes, self._chunk_bytes, self._max_tensors = max_message_bytes, chunk_bytes, max_tensors
        self._max_control_bytes = min(MAX_CONTROL_BYTES, max_message_bytes) if max_control_bytes is None else max_control_bytes
        self._connect_timeout = connect_timeout
        self._options = grpc_options(chunk_bytes)
        self._credentials = channel_credentials(tls) if tls is not None else None
        self._shaper = NodeShaper(name, links, radios)
        self._inbox: queue.Queue[Message] = queue.Queue()
        self._senders: dict[str, PeerSender] = {}
        self._lost: set[str] = set()   # peers a stream to which broke, or which could not be reached
        self._lock = threading.Lock()
        self._server: grpc.Server | None = None
        self._servicer: LinkServicer | None = None
        self._port: int | None = None
        self._closed = False
        self._stopping = threading.Event()   # set by close(): incoming streams being cut is expected

    @staticmethod
    def _split_address(address: str) -> tuple[str, int]:
        host, sep, port = address.rpartition(":")
        if not sep or not host or not port.isdigit() or int(port) > 65535:
            raise ValueError(f"address '{address}' must be HOST:PORT with a port from 0 to 65535")
        return host, int(port)

    @property
    def port(self) -> int:
        if self._port is None:
            raise TransportError(f"transport of node '{self.name}' is not started")
        return self._port

    @property
    def address(self) -> str:
        return f"{self._split_address(self._listen)[0]}:{self.port}"

    def start(self) -> None:
        """Listen for peers' streams; call once, before anyone sends to this node."""
        if self._closed:
            raise TransportError(f"transport of node '{self.name}' is closed")
        if self._server is not None:
            raise TransportError(f"transport of node '{self.name}' is already started")
        self._check_port_free()
        server = grpc.server(futures.ThreadPoolExecutor(MAX_STREAMS, thread_name_prefix=f"splitpipe-recv-{self.name}"),
                             options=[*self._options, *SERVER_OPTIONS], maximum_concurrent_rpcs=MAX_STREAMS)
        self._servicer = LinkServicer(self.name, self._secret, self._arrive, self._max_message_bytes,
                                      self._max_control_bytes, self._stopping,
                                      self._max_tensors, self._identity)
        add_LinkServicer_to_server(self._servicer, server)
        try:
            if self._tls is None:
                port = server.add_insecure_port(self._listen)
            else:
                port = server.add_secure_port(self._listen, server_credentials(self._tls))
        except RuntimeError as exc:
            raise TransportError(f"node '{self.name}' cannot listen on '{self._listen}': {exc}") from None
        if not port:
            raise TransportError(f"node '{self.name}' cannot listen on '{self._listen}'")
        server.start()
        self._server, self._port = server, port
        log.info("node '%s' listening on %s%s", self.name, self.address, " with mutual TLS" if self._tls else "")

    def _check_port_free(self) -> None:
        """A taken port as one clear error, before gRPC's core logs its own lines about it."""
        host, port = self._split_address(self._listen)
        if port == 0:
            return
        try:
            family, kind, proto, _, address = socket.getaddrinfo(host.strip("[]"), port, type=socket.SOCK_STREAM,
                                                                 flags=socket.AI_PASSIVE)[0]
        except OSError:
            return   # gRPC reports names it cannot resolve
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)   # as gRPC does: TIME_WAIT is no obstacle
            try:
                probe.bind(address)
            except OSError as exc:
                raise TransportError(f"node '{self.name}' cannot listen on '{self._listen}': port {port} is "
                                     f"{'taken' if exc.errno == errno.EADDRINUSE else exc.strerror}; pick another "
                                     f"with --listen") from None

    def add_peer(self, name: str, address: str, *, moved: bool = False) -> None:
        """Make `name` reachable at `address` ("host:port"); a peer's address cannot change once streamed
        to, unless `moved` says it restarted (its old stream is then dropped).

        "" (a peer that dials in) is ignored: gRPC streams go one way, so such a peer cannot be reached.
        """
        if not address:
            return
        self._split_address(address)
        with self._lock:
            sender = self._senders.get(name)
            if sender is not None and sender.address != address:
                if not moved:
                    raise TransportError(f"peer '{name}' already streams to {sender.address}; "
                                         f"cannot move it to {address}")
                del self._senders[name]
                sender.close(0)
            self._lost.discard(name)
            self._peers[name] = address
        if moved:
            self._shaper.forget_failure(name)

    def _sender(self, peer: str) -> PeerSender:
        with self._lock:
            if self._closed:
                raise TransportError(f"transport of node '{self.name}' is closed")
            sender = self._senders.get(peer)
            if sender is not None and (sender.error is not None or sender.finished):
                del self._senders[peer]   # report a failure once; the next send opens a new stream
                if sender.lost:
                    self._lost.add(peer)
                if sender.error is not None:
                    raise sender.error
                sender = None
            if sender is None:
                address = self._peers.get(peer)
                if address is None:
                    known = ", ".join(sorted(self._peers)) or "none"
                    raise TransportError(f"unknown peer '{peer}' for node '{self.name}'; known peers: {known}")
                metadata = ((NODE_KEY, self.name),) if self._identity else auth_metadata(self._secret or b"", self.name)
                options = self._options if self._tls is None else [*self._options,
                                                                   ("grpc.ssl_target_name_override", peer)]
                sender = PeerSender(self.name, peer, address, self._credentials, options,
                                    metadata, self._connect_timeout, self._identity, peer in self._lost)
                self._senders[peer] = sender
            return sender

    def send(self, peer: str, tag: Tag, payload: Payload) -> None:
        check_message(tag, payload)
        nbytes = payload_nbytes(payload)
        if nbytes > self._max_message_bytes:
            raise ValueError(f"payload {tag} of {nbytes} bytes exceeds max_message_bytes={self._max_message_bytes}")
        sender = self._sender(peer)
        frames = payload_to_frames(sender.next_message(), tag, payload, self._chunk_bytes)
        self._shaper.send(peer, nbytes, lambda: self._put(peer, sender, frames))

    def _put(self, peer: str, sender: PeerSender, frames: list[ProtoFrame]) -> None:
        """Hand a message to `sender`, found without the lock; if it began closing since (close(), the peer
        moved), to the sender the peer has now, numbered for its stream: the message goes out or this raises.
        The frames hold copies of the payload (taken at send), not the caller's tensors."""
        if sender.put(frames):
            return
        current = self._sender(peer)   # raises if the transport is closed or the stream failed
        number = current.next_message()
        for frame in frames:
            frame.message = number
        if not current.put(frames):
            raise TransportError(f"node '{self.name}' could not send to peer '{peer}': its stream closed twice "
                                 "while the message was handed over (is the peer being moved again and again?)")

    def _arrive(self, message: Message) -> None:
        """A message is in off the wire; this node's downlink radio may hold a data message longer."""
        if self._handled(message):
            return
        if message.is_control or message.payload is None or self._closed:
            self._inbox.put(message)
            return
        self._shaper.receive(message.src, payload_nbytes(message.payload),
                             lambda: self._inbox.put(replace(message, received_at=time.time())))

    def send_control(self, peer: str, body: dict) -> None:
        sender = self._sender(peer)
        self._put(peer, sender, control_to_frames(sender.next_message(), body, self._chunk_bytes,
                                                  self._max_control_bytes))

    def receive(self, timeout: float | None = None) -> Message | None:
        if self._closed:
            raise TransportError(f"transport of node '{self.name}' is closed")
        try:
            return self._inbox.get(timeout=timeout)
        except queue.Empty:
            return None

    def close(self) -> None:
        """Deliver what was sent (within connect_timeout; not to a peer known gone, whose stream broke and
        which cannot be reached), end the streams and stop the server."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            senders = list(self._senders.values())
        deadline = time.monotonic() + self._connect_timeout
        self._shaper.close(timeout=self._connect_timeout)
        for sender in senders:
            if not sender.close(max(0.0, deadline - time.monotonic())):
                log.warning("node '%s': stream to peer '%s' did not finish within %g s",
                            self.name, sender.peer, self._connect_timeout)
        self._stopping.set()
        if self._server is not None:
            self._server.stop(grace=0.1).wait()   # what peers send after close is not received
