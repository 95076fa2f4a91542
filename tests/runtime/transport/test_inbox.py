"""Who reads a socket connection (inbox.py): receive() itself for messages that are all in, the reader thread for the rest."""

from __future__ import annotations

import random
import socket
import threading
from collections.abc import Iterator

import pytest
import torch

from splitpipe.runtime.transport import Message, SocketTransport
from splitpipe.runtime.transport.channel import Connection
from splitpipe.runtime.transport.handshake import SharedSecret, dial_handshake
from splitpipe.runtime.transport.sockio import SocketReader
from splitpipe.runtime.transport.wire import encode_data
from splitpipe.schedules.ir import Tag

SECRET = b"inbox-test-secret"


def dial(address: str, name: str) -> Connection:
    """A hand-made push connection to node rx that passed the handshake as `name`; write raw bytes with .write."""
    host, _, port = address.rpartition(":")
    sock = socket.create_connection((host, int(port)), timeout=10)
    connection = Connection(sock, SocketReader(sock), "rx", "push", address)
    dial_handshake(connection.reader, connection.write, SharedSecret(name, SECRET), "rx", "push")
    return connection


@pytest.fixture
def pair() -> Iterator[tuple[SocketTransport, SocketTransport]]:
    rx = SocketTransport("rx", "127.0.0.1:0", {}, SECRET, connect_timeout=10.0)
    rx.start()
    tx = SocketTransport("tx", "127.0.0.1:0", {"rx": rx.address}, SECRET, connect_timeout=10.0)
    tx.start()
    rx.add_peer("tx", tx.address)
    yield tx, rx
    tx.close()
    rx.close()


def test_receive_reads_messages_that_are_in_itself(pair, monkeypatch) -> None:
    tx, rx = pair
    readers: list[str] = []
    read_one = SocketTransport._read_one

    def counted(self: SocketTransport, connection: Connection) -> Message | None:
        readers.append(threading.current_thread().name)
        return read_one(self, connection)
    monkeypatch.setattr(SocketTransport, "_read_one", counted)
    tensor = torch.arange(1024, dtype=torch.float32)
    for mb in range(50):
        tx.send("rx", Tag("act", mb=mb), tensor)
        message = rx.receive(30.0)
        assert message is not None and message.tag == Tag("act", mb=mb) and torch.equal(message.payload, tensor)
    # the reader thread may win a race now and then (its first wake-up, a slow scheduler), not every time
    assert readers.count(threading.current_thread().name) > 0, readers


def test_a_message_still_arriving_is_left_to_the_reader_and_receive_keeps_its_timeout(pair, wait_for) -> None:
    _, rx = pair
    raw = dial(rx.address, name="raw")
    whole = b"".join(bytes(b) for b in encode_data(Tag("act", mb=7), torch.arange(1 << 16, dtype=torch.float32))[0])
    try:
        raw.write([whole[:100_000]])   # the prefix and part of the body; the rest comes later
        assert rx.receive(0.3) is None   # not stuck reading a message whose rest has not come
        assert wait_for(lambda: rx.heard("raw") is not None)   # the reader thread takes the bytes: a sign of life
        raw.write([whole[100_000:]])
        message = rx.receive(30.0)
        assert message is not None and message.tag == Tag("act", mb=7)
        assert torch.equal(message.payload, torch.arange(1 << 16, dtype=torch.float32))
    finally:
        raw.release()


def test_order_per_peer_holds_whichever_thread_reads(pair) -> None:
    """Small messages (read in receive()) and large ones (left to the reader thread) mixed, with pauses that let
    the reader thread take over: every message arrives once, in order, intact."""
    tx, rx = pair
    rng = random.Random(5)
    sizes = [rng.choice([4, 1024, 40_000, 300_000]) for _ in range(300)]
    for mb, size in enumerate(sizes):
        tx.send("rx", Tag("act", mb=mb), torch.full((size,), float(mb)))
        if mb % 7 == 0:
            tx.send_control("rx", {"n": mb})
    got, controls = [], []
    while len(got) < len(sizes) or len(controls) < len(range(0, len(sizes), 7)):
        message = rx.receive(30.0)
        assert message is not None, f"after {len(got)} messages"
        if message.is_control:
            controls.append(message.control["n"])
            continue
        mb = message.tag.mb
        assert message.payload.shape == (sizes[mb],) and bool((message.payload == mb).all())
        got.append(mb)
        if rng.random() < 0.05:
            threading.Event().wait(0.08)   # longer than inbox.PARK_S: the reader thread reads meanwhile
    assert got == list(range(len(sizes)))
    assert controls == list(range(0, len(sizes), 7))


def test_a_receive_that_waits_before_any_peer_connects_gets_the_first_message(wait_for) -> None:
    """receive() keeps its poll set between calls; one that began with no connection at all must still wake."""
    rx = SocketTransport("rx", "127.0.0.1:0", {}, SECRET, connect_timeout=10.0)
    rx.start()
    tx = SocketTransport("tx", "127.0.0.1:0", {"rx": rx.address}, SECRET, connect_timeout=10.0)
    tx.start()
    sent: list[BaseException] = []

    def send_once_rx_waits() -> None:
        try:
            assert wait_for(lambda: rx._inbox._waiting)   # rx is in receive(), polling no connection yet
            tx.send("rx", Tag("act", mb=1), torch.ones(4))
        except BaseException as exc:   # reported by the main thread
            sent.append(exc)
    sender = threading.Thread(target=send_once_rx_waits)
    sender.start()
    try:
        message = rx.receive(30.0)
        sender.join(30.0)
        assert not sent, sent
        assert message is not None and message.tag == Tag("act", mb=1) and torch.equal(message.payload, torch.ones(4))
    finally:
        tx.close()
        rx.close()


def test_threads_sending_to_one_peer_at_once_keep_each_threads_order(pair) -> None:
    """Callers write small messages themselves when the channel is idle and queue behind one another
    otherwise: every message arrives once, each sending thread's in its order."""
    tx, rx = pair
    per_thread, threads = 200, 4

    def send(owner: int) -> None:
        for mb in range(per_thread):
            tx.send("rx", Tag("act", owner=owner, mb=mb), torch.full((mb % 7 * 5000 + 1,), float(mb)))
    senders = [threading.Thread(target=send, args=(owner,)) for owner in range(threads)]
    for sender in senders:
        sender.start()
    got: dict[int, list[int]] = {owner: [] for owner in range(threads)}
    for _ in range(per_thread * threads):
        message = rx.receive(30.0)
        assert message is not None and message.tag is not None
        assert bool((message.payload == message.tag.mb).all())
        got[message.tag.owner].append(message.tag.mb)
    for sender in senders:
        sender.join(30.0)
    assert got == {owner: list(range(per_thread)) for owner in range(threads)}
