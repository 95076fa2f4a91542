"""The transport contract: messages, errors and the abstract Transport every backend implements."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from types import TracebackType
from typing import TypeVar

import torch

from splitpipe.schedules.ir import Tag

__all__ = ["Payload", "Message", "TransportError", "Transport", "payload_nbytes", "check_payload"]

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


def check_payload(payload: object) -> None:
    """Raise TypeError unless `payload` is a tensor or a dict of str -> tensor."""
    if isinstance(payload, torch.Tensor):
        return
    if not isinstance(payload, dict):
        raise TypeError(f"payload must be a tensor or a dict of tensors, got {type(payload).__name__}")
    for key, value in payload.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            raise TypeError(f"state-dict entry {key!r} must map a str to a tensor, got {type(value).__name__}")


def payload_nbytes(payload: Payload) -> int:
    """Bytes of tensor data in `payload`: what a link is busy carrying (headers excluded)."""
    tensors = [payload] if isinstance(payload, torch.Tensor) else payload.values()
    return sum(t.numel() * t.element_size() for t in tensors)


class Transport(ABC):
    """Point-to-point messaging between named nodes.

    `send` never blocks: it snapshots the payload and queues it on the link to `peer`, which
    delivers in FIFO order, shaped by that link's bandwidth and latency. `send_control` is
    unshaped and need not stay in order with data. `receive` returns the next message from any peer.
    """

    name: str

    @abstractmethod
    def send(self, peer: str, tag: Tag, payload: Payload) -> None: ...

    @abstractmethod
    def send_control(self, peer: str, body: dict) -> None: ...

    @abstractmethod
    def receive(self, timeout: float | None = None) -> Message | None: ...

    @abstractmethod
    def close(self) -> None: ...

    def __enter__(self: _T) -> _T:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
