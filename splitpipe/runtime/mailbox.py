"""A node's mailbox over its transport: data messages by tag, control messages in order."""

from __future__ import annotations

import time
from collections import deque

from splitpipe.runtime.liveness import HEARTBEAT_S, SILENCE_S
from splitpipe.runtime.protocol import check_body
from splitpipe.runtime.transport import Message, Transport
from splitpipe.schedules.ir import Tag

__all__ = ["Mailbox", "RemoteFailure", "PhaseTimeout"]


class RemoteFailure(RuntimeError):
    """Another node failed (it said so, or the coordinator aborted the run because of it)."""

    def __init__(self, node: str, message: str) -> None:
        super().__init__(f"node {node} failed: {message}")
        self.node = node
        self.reason = message


class PhaseTimeout(RuntimeError):
    """Nothing that a phase of the run waits for came in time."""


class Mailbox:
    """What a node received and has not used yet.

    Data messages wait under their tag until a Recv takes them (a Tag names one message
    per epoch); every data message is also kept in `arrivals` for the link spans. Control
    messages queue in order, except `error` and `abort`, which raise RemoteFailure at once,
    and heartbeats. A watched node not heard from for `silence_s` seconds raises RemoteFailure.
    """

    def __init__(self, transport: Transport, silence_s: float = SILENCE_S) -> None:
        self.transport = transport
        self.name = transport.name
        self.silence_s = silence_s
        self.data: dict[Tag, Message] = {}
        self.controls: deque[Message] = deque()
        self.arrivals: list[Message] = []
        self.last_heard: dict[str, float] = {}

    def watch(self, node: str) -> None:
        """From now on, fail if `node` falls silent (its process died, or the network between us)."""
        self.last_heard[node] = time.time()

    def poll(self, timeout: float | None) -> bool:
        """File the next message, waiting up to `timeout` seconds; False if none came."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            wait = left if not self.last_heard else min(HEARTBEAT_S, HEARTBEAT_S if left is None else left)
            message = self.transport.receive(wait)
            if message is not None:
                self.file(message)
                # The inbox is in order of arrival: whatever came before this message is filed.
                self._check_silence(message.received_at)
                return True
            self._check_silence(time.time())
            if deadline is not None and time.monotonic() >= deadline:
                return False

    def drain(self) -> None:
        """File everything that has already arrived."""
        while self.poll(0):
            pass

    def file(self, message: Message) -> None:
        if message.src in self.last_heard:
            self.last_heard[message.src] = max(self.last_heard[message.src], message.received_at)
        if message.control is not None:
            kind = check_body(message.control, message.src)
            if kind == "alive":
                return
            if kind in ("error", "abort"):
                body = message.control
                raise RemoteFailure(str(body["node"]), str(body["message"]))
            self.controls.append(message)
            return
        tag = message.tag
        assert tag is not None
        if tag in self.data:
            raise RuntimeError(f"node {message.src} sent {tag} to {self.name} twice")
        self.data[tag] = message
        self.arrivals.append(message)

    def control(self, timeout: float, waiting_for: str) -> Message:
        """The next control message; PhaseTimeout after `timeout` seconds without one."""
        deadline = time.monotonic() + timeout
        while not self.controls:
            left = deadline - time.monotonic()
            if left <= 0:
                raise PhaseTimeout(f"{self.name} waited {timeout:g} s for {waiting_for}")
            self.poll(left)
        return self.controls.popleft()

    def take_data(self, tag: Tag, timeout: float, waiting_for: str) -> Message:
        """The data message `tag`, waiting for it; PhaseTimeout after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while tag not in self.data:
            left = deadline - time.monotonic()
            if left <= 0:
                raise PhaseTimeout(f"{self.name} waited {timeout:g} s for {waiting_for}")
            self.poll(left)
        return self.data.pop(tag)

    def _check_silence(self, now: float) -> None:
        """Fail if a watched node was silent for silence_s up to `now` (with everything until `now` filed)."""
        for node, heard in self.last_heard.items():
            if now - heard > self.silence_s:
                raise RemoteFailure(node, f"nothing heard from it for {now - heard:.0f} s "
                                          "(its process or the network to it is down)")

    def add_peer(self, name: str, address: str) -> None:
        """Tell the transport where `name` listens (gRPC needs it; in-process transports know every node)."""
        if address:
            self.transport.add_peer(name, address)
