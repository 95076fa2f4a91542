"""The receiving side of the gRPC transport: authenticates each stream, reassembles and delivers its messages."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator

import grpc

from splitpipe.runtime.transport.base import Message
from splitpipe.runtime.transport.codec import CodecError, messages_from_frames
from splitpipe.runtime.transport.proto.splitpipe_pb2 import Ack as ProtoAck
from splitpipe.runtime.transport.proto.splitpipe_pb2 import Frame as ProtoFrame
from splitpipe.runtime.transport.proto.splitpipe_pb2_grpc import LinkServicer as ProtoLinkServicer
from splitpipe.runtime.transport.security import authenticate

__all__ = ["LinkServicer"]

log = logging.getLogger("splitpipe.transport")


class LinkServicer(ProtoLinkServicer):
    """Serves the Link service for node `node`: the only place errors become gRPC status codes.

    A stream whose sender name and HMAC token do not match the shared secret is refused with
    UNAUTHENTICATED before any frame is read. A malformed message is logged and dropped; the
    stream, and every other stream, keeps going. A stream that breaks (the sender died) is
    delivered as a control message {"type": "broken"} from that sender.
    """

    def __init__(self, node: str, secret: bytes, deliver: Callable[[Message], None],
                 max_message_bytes: int, max_control_bytes: int, stopping: threading.Event) -> None:
        self._node, self._secret, self._deliver, self._stopping = node, secret, deliver, stopping
        self._max_message_bytes, self._max_control_bytes = max_message_bytes, max_control_bytes

    def Stream(self, request_iterator: Iterator[ProtoFrame], context: grpc.ServicerContext) -> ProtoAck:  # noqa: N802
        sender, ok = authenticate(self._secret, context.invocation_metadata())
        if not ok:
            log.warning("node '%s' refused a stream from %s claiming to be node '%s': missing or wrong "
                        "HMAC token (is the shared secret the same on both nodes?)",
                        self._node, context.peer(), sender[:80])
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "authentication failed")
        log.debug("node '%s' accepted a stream from node '%s' at %s", self._node, sender, context.peer())
        delivered = 0
        try:
            for item in messages_from_frames(request_iterator, self._max_message_bytes, self._max_control_bytes):
                if isinstance(item, CodecError):
                    log.warning("node '%s' dropped a malformed message from node '%s' at %s: %s",
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
