"""A Transport that hands every call to another one: tests subclass it to make a node misbehave on one call."""

from __future__ import annotations

from typing import Any

from splitpipe.runtime.transport import Message, Transport
from splitpipe.schedules.ir import Tag


class Passthrough(Transport):
    """`inner`'s transport, unchanged; a subclass overrides the call it tampers with."""

    def __init__(self, inner: Transport) -> None:
        self.inner, self.name = inner, inner.name

    def start(self) -> None:
        self.inner.start()

    @property
    def address(self) -> str:
        return self.inner.address

    def add_peer(self, name: str, address: str, *, moved: bool = False) -> None:
        self.inner.add_peer(name, address, moved=moved)

    def send(self, peer: str, tag: Tag, payload: Any) -> None:
        self.inner.send(peer, tag, payload)

    def send_control(self, peer: str, body: dict) -> None:
        self.inner.send_control(peer, body)

    def receive(self, timeout: float | None = None) -> Message | None:
        return self.inner.receive(timeout)

    def close(self) -> None:
        self.inner.close()
