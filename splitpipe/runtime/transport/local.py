"""In-process transport: queues between named nodes of one process, shaped like the real links."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Collection, Mapping, Sequence
from dataclasses import replace

import torch

from splitpipe.network import LinkSpec
from splitpipe.runtime.shaping import NodeShaper
from splitpipe.runtime.transport.base import (
    Message,
    Payload,
    Transport,
    TransportError,
    check_message,
    check_nodes,
    payload_nbytes,
)
from splitpipe.runtime.transport.codec import control_from_bytes, control_to_bytes
from splitpipe.schedules.ir import Tag

__all__ = ["LocalTransport", "make_local_transports"]


def _snapshot(payload: Payload) -> Payload:
    """A contiguous CPU copy, detached: what a receiver gets from the wire, immune to later in-place edits."""
    def copy(t: torch.Tensor) -> torch.Tensor:
        return t.detach().cpu().clone(memory_format=torch.contiguous_format)
    if isinstance(payload, torch.Tensor):
        return copy(payload)
    return {key: copy(t) for key, t in payload.items()}


class _Hub:
    """The inboxes of every node made together, and which of them are closed."""

    def __init__(self, names: Sequence[str]) -> None:
        self.inboxes: dict[str, queue.Queue[Message]] = {name: queue.Queue() for name in names}
        self.transports: dict[str, LocalTransport] = {}
        self.closed: set[str] = set()
        self.lock = threading.Lock()


class LocalTransport(Transport):
    """One node's end of an in-process hub; see make_local_transports.

    Every node of the hub is reachable by name from the moment the hub exists, so `start`
    only checks that it comes once, `address` is "" and `add_peer` does nothing.
    """

    implicit_peers = True

    def __init__(self, name: str, hub: _Hub, links: Mapping[tuple[str, str], LinkSpec],
                 radios: Collection[str] = ()) -> None:
        self.name = name
        self._hub = hub
        self._shaper = NodeShaper(name, links, radios)
        hub.transports[name] = self
        self._started = False
        self._closed = False

    def start(self) -> None:
        if self._closed:
            raise TransportError(f"transport of node '{self.name}' is closed")
        if self._started:
            raise TransportError(f"transport of node '{self.name}' is already started")
        self._started = True

    @property
    def address(self) -> str:
        return ""

    def add_peer(self, name: str, address: str, *, moved: bool = False) -> None:
        pass

    def _check_peer(self, peer: str) -> queue.Queue[Message]:
        if self._closed:
            raise TransportError(f"transport of node '{self.name}' is closed")
        inbox = self._hub.inboxes.get(peer)
        if inbox is None:
            known = ", ".join(sorted(self._hub.inboxes))
            raise TransportError(f"unknown peer '{peer}' for node '{self.name}'; known nodes: {known}")
        if peer in self._hub.closed:
            raise TransportError(f"peer '{peer}' is closed; node '{self.name}' cannot send to it")
        return inbox

    def send(self, peer: str, tag: Tag, payload: Payload) -> None:
        inbox = self._check_peer(peer)
        check_message(tag, payload)
        copy = _snapshot(payload)
        receiver = self._hub.transports[peer]
        message = Message(self.name, tag, copy, None, 0.0)
        self._shaper.send(peer, payload_nbytes(copy), lambda: receiver._arrive(inbox, message))

    def _arrive(self, inbox: queue.Queue[Message], message: Message) -> None:
        """A data message is in from the sender's side; this node's downlink radio may hold it longer."""
        def deliver() -> None:
            inbox.put(replace(message, received_at=time.time()))
        if self._closed:
            return
        self._shaper.receive(message.src, payload_nbytes(message.payload), deliver)  # type: ignore[arg-type]

    def send_control(self, peer: str, body: dict) -> None:
        inbox = self._check_peer(peer)
        copy = control_from_bytes(control_to_bytes(body))  # same JSON rules and limits as the wire
        message = Message(self.name, None, None, copy, time.time())
        if not self._hub.transports[peer]._handled(message):  # the receiver's handler, on this thread
            inbox.put(message)

    def receive(self, timeout: float | None = None) -> Message | None:
        if self._closed:
            raise TransportError(f"transport of node '{self.name}' is closed")
        try:
            return self._hub.inboxes[self.name].get(timeout=timeout)
        except queue.Empty:
            return None

    def close(self) -> None:
        if self._closed:
            return
        self._shaper.close(timeout=30.0)
        self._closed = True
        with self._hub.lock:
            self._hub.closed.add(self.name)


def make_local_transports(names: Sequence[str], links: Mapping[tuple[str, str], LinkSpec] | None = None,
                          radios: Collection[str] = ()) -> dict[str, Transport]:
    """Connected in-process transports, one per node; `links[(src, dst)]` shapes src -> dst (absent =
    unshaped), and the links of a node in `radios` share its uplink and its downlink."""
    check_nodes(names, links)
    hub = _Hub(names)
    return {name: LocalTransport(name, hub, links or {}, radios) for name in names}
