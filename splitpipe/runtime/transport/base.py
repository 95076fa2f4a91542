"""The transport contract: messages, errors and the abstract Transport every backend implements."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import ClassVar, TypeVar

import torch

from splitpipe.schedules.ir import Tag

__all__ = ["Payload", "Message", "TransportError", "Transport", "payload_nbytes", "check_payload", "check_message",
           "check_nodes"]

_T = TypeVar("_T", bound="Transport")

#: A tensor, or a state dict (weights).
Payload = torch.Tensor | dict[str, torch.Tensor]


@dataclass(frozen=True)
class Message:
    """One received message: data (`tag` and `payload`) or control (`control`), never both."""

    src: str                      # authenticated sender node name
    tag: Tag | None               # data messages: the schedule tag; None for control
    payload: Payload | None       # data messages
    control: dict | None          # control messages: JSON objects (assignments, traces, clock pings, done)
    received_at: float            # time.time() at the receiver when the whole message was in (after shaping)

    @property
    def is_control(self) -> bool:
        return self.control is not None


class TransportError(RuntimeError):
    """A peer is unknown, unreachable or refused us, or the transport is closed."""


def check_message(tag: object, payload: object) -> None:
    """Raise TypeError unless `tag` is a Tag and `payload` a tensor or a dict of str -> tensor: what every send checks."""
    if not isinstance(tag, Tag):
        raise TypeError(f"tag must be a Tag, got {type(tag).__name__}")
    check_payload(payload)


def check_payload(payload: object) -> None:
    """Raise TypeError unless `payload` is a tensor or a dict of str -> tensor."""
    if isinstance(payload, torch.Tensor):
        return
    if not isinstance(payload, dict):
        raise TypeError(f"payload must be a tensor or a dict of tensors, got {type(payload).__name__}")
    for key, value in payload.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            raise TypeError(f"state-dict entry {key!r} must map a str to a tensor, got {type(value).__name__}")


def check_nodes(names: Sequence[str], links: Iterable[tuple[str, str]] | None) -> None:
    """Raise ValueError unless `names` are unique and every link joins two of them."""
    if len(set(names)) != len(names):
        raise ValueError(f"node names must be unique, got {list(names)}")
    for src, dst in links or {}:
        for node in (src, dst):
            if node not in names:
                raise ValueError(f"link ({src!r}, {dst!r}) names unknown node '{node}'; nodes are {list(names)}")


def payload_nbytes(payload: Payload) -> int:
    """Bytes of tensor data in `payload`: what a link is busy carrying (headers excluded)."""
    tensors = [payload] if isinstance(payload, torch.Tensor) else payload.values()
    return sum(t.numel() * t.element_size() for t in tensors)


class Transport(ABC):
    """Point-to-point messaging between named nodes; every backend offers all of it.

    `start` makes the node reachable at `address` ("" in-process, where every node of the set
    reaches every other by name: `implicit_peers`). `add_peer` tells it where another node is
    reached (a no-op where peers are implicit). `send` never blocks: it snapshots the payload
    and queues it on the link to `peer`, which delivers in FIFO order, shaped by that link's
    bandwidth and latency. `send_control` is unshaped and need not stay in order with data.
    `receive` returns the next message from any peer. `close` delivers what was sent, then
    refuses everything; a `with` block closes the transport at its end.

    `on_control(src, body)`, where set, sees each control message on the thread that delivers it
    (a receiving thread; in-process, the sender's), before it is queued; True: it was handled there and is not queued (a liveness poll is answered
    so, whatever the node's own thread is busy with: runtime/liveness.py).
    """

    name: str
    #: True where every node of the set is reachable by name from the start (no add_peer needed).
    implicit_peers: ClassVar[bool] = False
    on_control: Callable[[str, dict], bool] | None = None

    def _handled(self, message: Message) -> bool:
        """Whether `on_control` took `message` (call on the receiving thread, before queueing it)."""
        return message.control is not None and self.on_control is not None and self.on_control(message.src,
                                                                                                message.control)

    @abstractmethod
    def start(self) -> None:
        """Begin accepting messages from peers; call once, before anyone sends to this node."""

    @property
    @abstractmethod
    def address(self) -> str:
        """Where peers reach this node ("HOST:PORT"), once started; "" where peers are implicit."""

    @abstractmethod
    def add_peer(self, name: str, address: str, *, moved: bool = False) -> None:
        """Make node `name` reachable at `address` (as its own `address` says; "" where it dials in);
        `moved`: it may have listened elsewhere before (a node restarted after it died), its old
        stream is dropped."""

    @abstractmethod
    def send(self, peer: str, tag: Tag, payload: Payload) -> None: ...

    @abstractmethod
    def send_control(self, peer: str, body: dict) -> None: ...

    @abstractmethod
    def receive(self, timeout: float | None = None) -> Message | None: ...

    @abstractmethod
    def close(self) -> None: ...

    def heard(self, peer: str) -> float | None:
        """When bytes last arrived from `peer` (time.time()), mid-message too; None where not tracked."""
        return None

    def __enter__(self: _T) -> _T:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
