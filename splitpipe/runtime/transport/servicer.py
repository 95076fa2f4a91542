"""The receiving side of the gRPC transport: authenticates each stream, reassembles and delivers its messages."""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator

import grpc

from splitpipe.runtime.transport.base import Message
from splitpipe.runtime.transport.codec import CodecError, Decoded, messages_from_frames
from splitpipe.runtime.transport.identity import AUTH_FIELD, CHALLENGE_KEY, Identity, new_challenge
from splitpipe.runtime.transport.limits import MAX_TENSORS
from splitpipe.runtime.transport.proto.splitpipe_pb2 import Ack as ProtoAck
from splitpipe.runtime.transport.proto.splitpipe_pb2 import Frame as ProtoFrame
from splitpipe.runtime.transport.proto.splitpipe_pb2_grpc import LinkServicer as ProtoLinkServicer
from splitpipe.runtime.transport.ratelimit import RateLimitedLog
from splitpipe.runtime.transport.security import NODE_KEY, authenticate

__all__ = ["LinkServicer", "MAX_STREAMS_PER_PEER"]

log = logging.getLogger("splitpipe.transport")

#: Streams one sender may hold open at once: its stream, and a new one while a broken one winds down.
MAX_STREAMS_PER_PEER = 4
#: Seconds a sender has to answer the challenge of a new stream (per-node identity only).
HANDSHAKE_S = 10.0


def certificate_names(context: grpc.ServicerContext) -> set[str] | None:
    """The names (common name and alternative names) of the sender's TLS certificate; None without TLS."""
    auth = context.auth_context() or {}
    if b"ssl" not in auth.get("transport_security_type", ()):
        return None
    return {v.decode(errors="replace") for key in ("x509_common_name", "x509_subject_alternative_name")
            for v in auth.get(key, ())}


def _host(peer: str) -> str:
    """The address part of a gRPC peer string ("ipv4:1.2.3.4:5678" -> "ipv4:1.2.3.4"): the rate-limit key."""
    return peer.rpartition(":")[0] or peer


class LinkServicer(ProtoLinkServicer):
    """Serves the Link service for node `node`: the only place errors become gRPC status codes.

    A stream whose sender name and HMAC token do not match the shared secret is refused with
    UNAUTHENTICATED before any frame is read, and so is one whose TLS certificate does not name
    the node it claims to be, and a sender already holding
    MAX_STREAMS_PER_PEER streams (RESOURCE_EXHAUSTED). A malformed message is logged and
    dropped; the stream, and every other stream, keeps going. What a stream holds (its
    assembler and any half-received message) is released when it ends. Refusals are logged
    at a bounded rate per sender. A stream that breaks (the sender died) is delivered as a
    control message {"type": "broken"} from that sender.
    """

    def __init__(self, node: str, secret: bytes | None, deliver: Callable[[Message], None],
                 max_message_bytes: int, max_control_bytes: int, stopping: threading.Event,
                 max_tensors: int = MAX_TENSORS, identity: Identity | None = None) -> None:
        self._node, self._secret, self._deliver, self._stopping = node, secret, deliver, stopping
        self._identity = identity
        self._max_message_bytes, self._max_control_bytes = max_message_bytes, max_control_bytes
        self._max_tensors = max_tensors
        self._streams: Counter[str] = Counter()   # open streams per authenticated sender
        self._lock = threading.Lock()
        self._refusals = RateLimitedLog(log)

    def open_streams(self) -> dict[str, int]:
        """Streams open now, per sender (for tests and diagnostics)."""
        with self._lock:
            return {name: n for name, n in self._streams.items() if n}

    def Stream(self, request_iterator: Iterator[ProtoFrame], context: grpc.ServicerContext) -> ProtoAck:  # noqa: N802
        if self._identity is None:
            sender, ok = authenticate(self._secret or b"", context.invocation_metadata())
            why = "missing or wrong HMAC token (is the shared secret the same on both nodes?)"
        else:
            sender = str(dict(context.invocation_metadata() or ()).get(NODE_KEY, ""))
            ok, why = sender in self._identity.peers, "no public key for that node"
        names = certificate_names(context)
        if ok and names is not None and sender not in names:
            ok, why = False, f"its TLS certificate is for {', '.join(sorted(names))[:120]}, not for that node"
        if not ok:
            self._refusals.warning(_host(context.peer()), "node '%s' refused a stream from %s claiming to be node "
                                   "'%s': %s", self._node, context.peer(), sender[:80], why)
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "authentication failed")
        with self._lock:
            full = self._streams[sender] >= MAX_STREAMS_PER_PEER
            if not full:
                self._streams[sender] += 1
        if full:
            self._refusals.warning(sender, "node '%s' refused a stream from node '%s' at %s: it already has %d open",
                                   self._node, sender, context.peer(), MAX_STREAMS_PER_PEER)
            context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, "too many streams")
        try:
            return self._serve(sender, request_iterator, context)
        finally:
            with self._lock:
                self._streams[sender] -= 1
                if not self._streams[sender]:
                    del self._streams[sender]

    def _serve(self, sender: str, request_iterator: Iterator[ProtoFrame], context: grpc.ServicerContext) -> ProtoAck:
        log.debug("node '%s' accepted a stream from node '%s' at %s", self._node, sender, context.peer())
        delivered = 0
        items = messages_from_frames(request_iterator, self._max_message_bytes, self._max_control_bytes,
                                     self._max_tensors)
        if self._identity is not None and not self._handshake(self._identity, sender, items, context):
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "authentication failed")
        try:
            for item in items:
                if isinstance(item, CodecError):
                    self._refusals.warning(sender, "node '%s' dropped a malformed message from node '%s' at %s: %s",
                                           self._node, sender, context.peer(), item)
                    continue
                self._deliver(Message(sender, item.tag, item.payload, item.control, time.time()))
                delivered += 1
        except grpc.RpcError:   # the stream was cancelled or broke a gRPC limit; gRPC already ended it
            level = logging.DEBUG if self._stopping.is_set() else logging.WARNING   # we are closing: expected
            log.log(level, "node '%s': stream from node '%s' at %s ended abnormally after %d message(s)",
                    self._node, sender, context.peer(), delivered)
            if not self._stopping.is_set():  # its process or the network died: say so at once, in order
                self._deliver(Message(sender, None, None, {"type": "broken"}, time.time()))
        except Exception:
            log.exception("node '%s': internal error on the stream from node '%s'", self._node, sender)
            context.abort(grpc.StatusCode.INTERNAL, "internal error")
        return ProtoAck(messages=delivered)

    def _handshake(self, identity: Identity, sender: str, items: Iterator[Decoded | CodecError],
                   context: grpc.ServicerContext) -> bool:
        """(2)-(4) of identity.py: challenge this stream; its first message must be the sender's signature."""
        challenge = new_challenge()
        context.send_initial_metadata(((CHALLENGE_KEY, challenge),))
        timer = threading.Timer(HANDSHAKE_S, context.cancel)   # a sender that never answers frees its thread
        timer.start()
        try:
            first = next(items, None)
        except grpc.RpcError:
            first = None
        finally:
            timer.cancel()
        body = first.control if isinstance(first, Decoded) else None
        if body is not None and set(body) == {AUTH_FIELD} and identity.verify(sender, challenge, body[AUTH_FIELD]):
            return True
        self._refusals.warning(_host(context.peer()), "node '%s' refused a stream from %s claiming to be node '%s': "
                               "no valid signature of this stream's challenge", self._node, context.peer(), sender)
        return False
