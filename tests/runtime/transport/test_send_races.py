"""A send that races close() or a peer's move: the message is delivered or the send raises, never dropped unsaid.

`send` finds its channel without the transport's lock; the tests pause a sender right after that
look-up (in `encode_data`, which runs between it and the hand-over) while another thread closes the
transport or moves the peer, so the race happens every time.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
import torch

from splitpipe.network import LinkSpec
from splitpipe.runtime.transport import GrpcTransport, SocketTransport, TransportError
from splitpipe.runtime.transport import grpc_transport as grpc_module
from splitpipe.runtime.transport import socket_transport as socket_module
from splitpipe.runtime.transport.channel import Channel, Connection
from splitpipe.runtime.transport.sockio import SocketReader
from splitpipe.runtime.transport.wire import Pool, encode_data, read_message
from splitpipe.schedules.ir import Tag

from .conftest import SECRET

SIZES = {"4 KiB (written by the caller)": 1 << 10, "1 MiB (partly queued)": 1 << 18}   # float32 elements


@contextmanager
def paused_sender(monkeypatch: pytest.MonkeyPatch, send: Callable[[], None], module: object = socket_module,
                  encoder: str = "encode_data") -> Iterator[list[Exception]]:
    """Run `send` in a thread held between its channel look-up and the hand-over (in `module.encoder`)
    until the block ends; yields the errors it raised (filled once the block is left)."""
    looked_up, go, errors = threading.Event(), threading.Event(), []
    encode = getattr(module, encoder)

    def held(*args, **kwargs):   # type: ignore[no-untyped-def]
        if threading.current_thread().name == "racing-sender":
            looked_up.set()
            assert go.wait(30)
        return encode(*args, **kwargs)

    def run() -> None:
        try:
            send()
        except Exception as exc:   # noqa: BLE001 - handed to the test
            errors.append(exc)

    monkeypatch.setattr(module, encoder, held)
    thread = threading.Thread(target=run, name="racing-sender", daemon=True)
    thread.start()
    assert looked_up.wait(30)
    try:
        yield errors
    finally:
        go.set()
        thread.join(30)
        assert not thread.is_alive()


@pytest.mark.parametrize("size", list(SIZES))
def test_a_send_racing_a_move_of_its_peer_reaches_the_new_process(monkeypatch, size: str) -> None:
    payload = torch.arange(SIZES[size], dtype=torch.float32)
    with SocketTransport("bob", "127.0.0.1:0", {}, SECRET) as old, \
            SocketTransport("bob", "127.0.0.1:0", {}, SECRET) as new:
        old.start()
        new.start()
        with SocketTransport("tx", "127.0.0.1:0", {"bob": old.address}, SECRET, connect_timeout=5.0) as tx:
            tx.send("bob", Tag("act", mb=0), payload)
            assert old.receive(10.0).tag == Tag("act", mb=0)   # the channel to the old process works
            with paused_sender(monkeypatch, lambda: tx.send("bob", Tag("act", mb=1), payload)) as errors:
                tx.add_peer("bob", new.address, moved=True)   # closes the channel the sender holds
            assert errors == []
            message = new.receive(10.0)
            assert message is not None and message.tag == Tag("act", mb=1)
            assert torch.equal(message.payload, payload)


@pytest.mark.parametrize("size", list(SIZES))
def test_a_send_racing_close_raises(monkeypatch, size: str) -> None:
    payload = torch.arange(SIZES[size], dtype=torch.float32)
    with SocketTransport("bob", "127.0.0.1:0", {}, SECRET) as rx:
        rx.start()
        tx = SocketTransport("tx", "127.0.0.1:0", {"bob": rx.address}, SECRET, connect_timeout=5.0)
        tx.send("bob", Tag("act", mb=0), payload)
        assert rx.receive(10.0).tag == Tag("act", mb=0)
        with paused_sender(monkeypatch, lambda: tx.send("bob", Tag("act", mb=1), payload)) as errors:
            tx.close()   # says bye on the channel the sender holds
        assert len(errors) == 1 and isinstance(errors[0], TransportError), errors
        assert "closed" in str(errors[0])


def test_a_channel_refuses_a_put_once_it_began_closing(wait_for) -> None:
    a, b = socket.socketpair()
    connection = Connection(a, SocketReader(a), "peer", "push", "here")
    channel = Channel("node", "peer", lambda: connection, Pool())
    assert wait_for(lambda: channel.where == "here")
    try:
        buffers, _ = encode_data(Tag("act", mb=0), torch.ones(3))
        assert channel.put(buffers)
        assert channel.close(10.0)
        assert not channel.put(encode_data(Tag("act", mb=1), torch.ones(3))[0])   # refused, not queued after the bye
        reader = SocketReader(b)
        assert read_message(reader, 1 << 20, strict=True).tag == Tag("act", mb=0)
        with pytest.raises(Exception, match="bye"):
            read_message(reader, 1 << 20, strict=True)
    finally:
        connection.release()
        b.close()


def test_grpc_a_send_racing_a_move_of_its_peer_reaches_the_new_process(monkeypatch) -> None:
    payload = torch.arange(256, dtype=torch.float32)
    with GrpcTransport("bob", "127.0.0.1:0", {}, SECRET) as old, GrpcTransport("bob", "127.0.0.1:0", {}, SECRET) as new:
        old.start()
        new.start()
        with GrpcTransport("tx", "127.0.0.1:0", {"bob": old.address}, SECRET, connect_timeout=5.0) as tx:
            tx.send("bob", Tag("act", mb=0), payload)
            assert old.receive(10.0).tag == Tag("act", mb=0)
            with paused_sender(monkeypatch, lambda: tx.send("bob", Tag("act", mb=1), payload), grpc_module,
                               "payload_to_frames") as errors:
                tx.add_peer("bob", new.address, moved=True)   # ends the stream the sender holds
            assert errors == []
            message = new.receive(10.0)
            assert message is not None and message.tag == Tag("act", mb=1)
            assert torch.equal(message.payload, payload)


def test_grpc_a_send_racing_close_raises(monkeypatch) -> None:
    with GrpcTransport("bob", "127.0.0.1:0", {}, SECRET) as rx:
        rx.start()
        tx = GrpcTransport("tx", "127.0.0.1:0", {"bob": rx.address}, SECRET, connect_timeout=5.0)
        tx.send("bob", Tag("act", mb=0), torch.ones(4))
        assert rx.receive(10.0).tag == Tag("act", mb=0)
        with paused_sender(monkeypatch, lambda: tx.send("bob", Tag("act", mb=1), torch.ones(4)), grpc_module,
                           "payload_to_frames") as errors:
            tx.close()   # ends the stream the sender holds
        assert len(errors) == 1 and isinstance(errors[0], TransportError), errors
        assert "closed" in str(errors[0])


def test_grpc_a_shaped_message_handed_to_a_moved_peer_carries_what_was_sent(monkeypatch) -> None:
    """On a shaped link the message waits in the link model; if its stream closes meanwhile (the peer moved),
    it goes to the new stream as it was sent, not as the caller's tensor is by then."""
    payload = torch.ones(1 << 14)   # 64 KiB at 100 kB/s: handed over after ~0.65 s
    links = {("tx", "bob"): LinkSpec(1e5, 0.0)}
    with GrpcTransport("bob", "127.0.0.1:0", {}, SECRET) as old, GrpcTransport("bob", "127.0.0.1:0", {}, SECRET) as new:
        old.start()
        new.start()
        with GrpcTransport("tx", "127.0.0.1:0", {"bob": old.address}, SECRET, links=links, connect_timeout=5.0) as tx:
            tx.send_control("bob", {"k": 0})   # opens the stream to the old process (control is not shaped)
            assert old.receive(10.0).control == {"k": 0}
            tx.send("bob", Tag("act", mb=1), payload)
            payload.fill_(7.0)   # the caller reuses its buffer once send returned
            tx.add_peer("bob", new.address, moved=True)
            message = new.receive(10.0)
            assert message is not None and message.tag == Tag("act", mb=1)
            assert torch.equal(message.payload, torch.ones(1 << 14))
