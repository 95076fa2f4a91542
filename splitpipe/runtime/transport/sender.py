"""The sending side of the gRPC transport: one thread and one long-lived client stream per peer."""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Iterator, Sequence

import grpc

from splitpipe.runtime.transport.base import TransportError
from splitpipe.runtime.transport.codec import control_to_frames
from splitpipe.runtime.transport.identity import AUTH_FIELD, CHALLENGE_KEY, Identity
from splitpipe.runtime.transport.proto.splitpipe_pb2 import Frame as ProtoFrame
from splitpipe.runtime.transport.proto.splitpipe_pb2_grpc import LinkStub as ProtoLinkStub

__all__ = ["PeerSender"]

log = logging.getLogger("splitpipe.transport")

#: Seconds between looks at whether a closing sender's peer became unreachable.
CLOSE_POLL_S = 0.05


class PeerSender:
    """Streams queued messages to one peer, in order, over a stream opened on first use.

    The thread connects (within `connect_timeout`), opens the stream and feeds it from the
    queue until `close`. If the connection or the stream fails, `error` says why and the
    messages still queued are dropped; the owner reports it on the next send and starts afresh.
    `after_break`: the sender before this one lost its peer (its stream broke or it could not
    connect), so a failed connection attempt now means the peer is gone, not that it does not
    listen yet: `unreachable`, and close gives up on it at once.
    """

    def __init__(self, node: str, peer: str, address: str, credentials: grpc.ChannelCredentials | None,
                 options: Sequence[tuple[str, object]], metadata: Sequence[tuple[str, str]],
                 connect_timeout: float, identity: Identity | None = None, after_break: bool = False) -> None:
        self.node, self.peer, self.address = node, peer, address
        self._credentials, self._options, self._metadata = credentials, list(options), tuple(metadata)
        self._connect_timeout = connect_timeout
        self._identity = identity
        self._call: list[grpc.Future] = []     # the open call, for its challenge (per-node identity)
        self._call_ready = threading.Event()
        self._queue: queue.Queue[list[ProtoFrame] | None] = queue.Queue()
        self._next_message = 0
        self._lock = threading.Lock()
        self._closing = False
        self.error: TransportError | None = None   # a failure to report on the next send
        self.finished = False                      # the stream is over; a new send needs a new sender
        self.lost = False                          # it ended without our close: the peer went away or refused
        self.after_break = after_break
        self._state: grpc.ChannelConnectivity | None = None   # the channel's, as gRPC last told it
        self._connected = False
        self._channel = self._make_channel()
        self._ready = grpc.channel_ready_future(self._channel)
        self._channel.subscribe(self._note_state)   # here, not in the thread: abandon() may close the channel first
        self._thread = threading.Thread(target=self._run, name=f"splitpipe-send-{node}-{peer}", daemon=True)
        self._thread.start()

    def next_message(self) -> int:
        with self._lock:
            self._next_message += 1
            return self._next_message

    def put(self, frames: list[ProtoFrame]) -> bool:
        """Queue one message's frames; False once `close` began or the stream ended: nothing was queued
        (behind the stream's end it would never be sent), and the caller finds the message another sender."""
        with self._lock:
            if self._closing or self.finished:
                return False
            self._queue.put(frames)
            return True

    def pending(self) -> int:
        return self._queue.qsize()

    @property
    def unreachable(self) -> bool:
        """The peer is known gone: it was lost before and the latest attempt to reach it failed."""
        return self.after_break and not self._connected and self._state is grpc.ChannelConnectivity.TRANSIENT_FAILURE

    def close(self, timeout: float) -> bool:
        """Send what is queued, end the stream and wait up to `timeout`, or until the peer is `unreachable`
        (what is queued then is dropped); False if it did not finish."""
        with self._lock:   # a put after this is refused, not queued behind the stream's end
            self._closing = True
        self._queue.put(None)
        deadline = time.monotonic() + timeout
        while self._thread.is_alive() and time.monotonic() < deadline:
            if self.unreachable:
                self.abandon()
            self._thread.join(min(CLOSE_POLL_S, max(0.0, deadline - time.monotonic())))
        return not self._thread.is_alive()

    def abandon(self) -> None:
        """Stop at once, as a process that dies: stop connecting, cut the stream without ending it (the
        peer sees it break) and drop what is queued."""
        self._closing = True
        self._ready.cancel()
        self._channel.close()

    def _frames(self) -> Iterator[ProtoFrame]:
        while True:
            frames = self._queue.get()
            if frames is None:
                return
            yield from frames

    def _signed_frames(self) -> Iterator[ProtoFrame]:
        """Answer the receiver's challenge with this node's signature (message 0), then stream as usual."""
        assert self._identity is not None
        self._call_ready.wait()
        challenge = dict(self._call[0].initial_metadata() or ()).get(CHALLENGE_KEY)
        if not isinstance(challenge, str):
            return   # refused before any challenge: the call's status says why
        yield from control_to_frames(0, {AUTH_FIELD: self._identity.sign(challenge, self.peer)}, 1 << 12)
        yield from self._frames()

    def _end(self, error: TransportError, code: grpc.StatusCode | None = None) -> None:
        """The stream is over: drop what is queued; keep `error` for the owner unless nothing was lost."""
        with self._lock:
            self.lost = not self._closing
            dropped = 0
            while True:   # a sentinel from close() is not a message
                try:
                    dropped += self._queue.get_nowait() is not None
                except queue.Empty:
                    break
            self._queue.put(None)   # releases gRPC's thread if it still waits for the next frame
            quiet = self._closing and not dropped
            harmless = not dropped and code in (grpc.StatusCode.CANCELLED, grpc.StatusCode.UNAVAILABLE)
            if not (quiet or harmless):
                self.error = error   # before `finished`: an owner that sees the stream over sees why
            self.finished = True
        if quiet:
            log.debug("%s (while closing)", error)
        elif harmless:
            log.info("%s; nothing queued was lost, the next send reconnects", error)
        else:
            log.error("%s; %d queued message(s) dropped", error, dropped)

    def _make_channel(self) -> grpc.Channel:
        if self._credentials is None:
            return grpc.insecure_channel(self.address, options=self._options)
        return grpc.secure_channel(self.address, self._credentials, options=self._options)

    def _note_state(self, state: grpc.ChannelConnectivity) -> None:
        self._state = state

    def _run(self) -> None:
        channel = self._channel
        try:
            try:
                self._ready.result(timeout=self._connect_timeout)
            except grpc.FutureTimeoutError:
                self._end(TransportError(f"node '{self.node}' could not connect to peer '{self.peer}' at "
                                          f"{self.address} within {self._connect_timeout:g} s"))
                return
            except grpc.FutureCancelledError:
                self._end(TransportError(f"node '{self.node}' gave up on peer '{self.peer}' at {self.address}: "
                                          f"it is gone (its stream broke and it cannot be reached)"))
                return
            self._connected = True
            channel.unsubscribe(self._note_state)   # only a sender still connecting needs the state
            stub = ProtoLinkStub(channel)
            try:
                if self._identity is None:
                    stub.Stream(self._frames(), metadata=self._metadata, wait_for_ready=True)
                else:
                    self._call.append(stub.Stream.future(self._signed_frames(), metadata=self._metadata,
                                                         wait_for_ready=True))
                    self._call_ready.set()
                    self._call[0].result()
                with self._lock:
                    self.finished = True
            except grpc.RpcError as exc:
                code = exc.code() if hasattr(exc, "code") else None
                details = exc.details() if hasattr(exc, "details") else str(exc)
                self._end(TransportError(f"stream from node '{self.node}' to peer '{self.peer}' at "
                                         f"{self.address} failed: {code.name if code else 'UNKNOWN'}: {details}"),
                          code)
        finally:
            channel.unsubscribe(self._note_state)
            channel.close()
