"""The socket transport's fast paths: caller-written partial messages, reads that bypass the buffer, snapshot buffers."""

from __future__ import annotations

import random
import socket
import threading

import numpy as np
import pytest
import torch

from splitpipe.runtime.transport import channel as channel_module
from splitpipe.runtime.transport import wire
from splitpipe.runtime.transport.channel import Channel, Connection
from splitpipe.runtime.transport.codec import Decoded
from splitpipe.runtime.transport.limits import CodecError
from splitpipe.runtime.transport.sockio import (
    AFTER_LARGE,
    DIRECT_FROM,
    SocketReader,
    rest,
    write_all,
    write_some,
)
from splitpipe.runtime.transport.wire import Pool, encode_data, read_message
from splitpipe.schedules.ir import Tag


def _pair(sndbuf: int = 0) -> tuple[socket.socket, socket.socket]:
    a, b = socket.socketpair()
    if sndbuf:
        a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
        b.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, sndbuf)
    return a, b


def test_reads_of_any_size_keep_the_byte_order() -> None:
    rng = random.Random(3)
    data = np.random.default_rng(3).integers(0, 256, 3 << 20, dtype=np.uint8).tobytes()
    a, b = _pair()
    writer = threading.Thread(target=write_all, args=(a, [data]))
    writer.start()
    reader, got, at = SocketReader(b), bytearray(), 0
    while at < len(data):   # headers and bodies: small reads through the buffer, large ones straight in
        size = min(len(data) - at, rng.choice([13, 40, 900, DIRECT_FROM - 1, DIRECT_FROM, 300_000]))
        view = memoryview(bytearray(size))
        n = reader.readinto(view)
        assert n > 0
        got += view[:n]
        at += n
    writer.join()
    assert bytes(got) == data
    a.close()
    assert reader.readinto(memoryview(bytearray(DIRECT_FROM))) == 0   # the end of the stream
    reader.close()
    b.close()


def test_write_some_takes_what_fits_and_rest_is_the_remainder() -> None:
    a, b = _pair(sndbuf=64 << 10)
    payload = np.arange(1 << 20, dtype=np.uint8)
    buffers = [b"head", payload.data]
    sent = write_some(a, buffers)
    assert 0 < sent < len(payload) + 4   # the kernel took part of it, and nothing blocked
    left = rest(buffers, sent)
    assert sum(v.nbytes for v in left) == len(payload) + 4 - sent
    assert bytes(left[-1]) == payload.tobytes()[len(payload) - left[-1].nbytes:]
    a.close()
    b.close()


def test_write_some_of_one_joined_buffer_takes_what_fits() -> None:
    a, b = _pair(sndbuf=64 << 10)
    data = bytes(range(256)) * 4096   # 1 MiB in one buffer: more than the socket takes at once
    sent = write_some(a, [data])
    assert 0 < sent < len(data)
    assert bytes(rest([data], sent)[0]) == data[sent:]
    a.close()
    b.close()


def test_messages_whole_in_the_read_buffer_decode_as_read_one_by_one() -> None:
    """Several small messages arrive in one recv and are decoded straight from the buffer; a malformed one
    among them is dropped with its reason and the next one still decodes."""
    tensors = [torch.arange(6, dtype=torch.float32).reshape(2, 3), torch.tensor([True, False]),
               torch.zeros(0, 4, dtype=torch.int64), torch.arange(5, dtype=torch.float32).to(torch.bfloat16)]
    messages = [b"".join(bytes(x) for x in encode_data(Tag("act", owner=1, part=2, step=3, mb=i), t)[0])
                for i, t in enumerate(tensors)]
    bad = messages[1][:-1] + b"\x07"   # a bool tensor holding a byte other than 0 and 1
    a, b = _pair()
    a.sendall(b"".join([messages[0], bad, *messages[1:]]))
    reader = SocketReader(b)
    assert reader.fill() and reader.buffered == sum(map(len, messages)) + len(bad)   # all in one buffer
    out = [read_message(reader, 1 << 30) for _ in range(len(messages) + 1)]
    assert isinstance(out[1], CodecError) and "bool" in str(out[1])
    decoded = [out[0], *out[2:]]
    for i, (item, tensor) in enumerate(zip(decoded, tensors)):
        assert isinstance(item, Decoded) and item.tag == Tag("act", owner=1, part=2, step=3, mb=i)
        assert item.payload.dtype == tensor.dtype and torch.equal(item.payload, tensor)
    assert reader.buffered == 0
    a.close()
    b.close()


def test_pool_copies_payload_views_once_and_never_keeps_a_payload() -> None:
    pool = Pool()
    tensor = torch.arange(1 << 18, dtype=torch.float32)   # 1 MiB: sent as a view of the tensor, not joined
    buffers, _ = encode_data(Tag("act"), tensor)
    copies = pool.snapshot(buffers)
    assert pool.snapshot(copies) == copies   # already snapshots: not copied again
    tensor.add_(1)
    assert bytes(copies[1]) == torch.arange(1 << 18, dtype=torch.float32).numpy().tobytes()
    pool.recycle(buffers)   # the payload's own memory: never taken
    assert pool._idle_bytes == 0
    pool.recycle(copies)
    assert pool._idle_bytes == 1 << 20


def test_a_channel_writes_partial_messages_in_order_and_snapshots_what_is_left(wait_for, monkeypatch) -> None:
    partial: list[int] = []

    def counted(sock: socket.socket, buffers: list) -> int:
        sent = write_some(sock, buffers)
        partial.append(sent < sum(len(x) for x in buffers))
        return sent
    monkeypatch.setattr(channel_module, "write_some", counted)
    a, b = _pair(sndbuf=64 << 10)
    connection = Connection(a, SocketReader(a), "peer", "push", "here")
    channel = Channel("node", "peer", lambda: connection, Pool())
    assert wait_for(lambda: channel.where == "here")   # connected: the caller may write
    sent: list[bytes] = []
    try:
        for i in range(12):   # large ones outgrow the socket buffer: written in part by the caller, the rest queued
            tensor = torch.full(((i % 3) * 300_000 + 5,), float(i))
            buffers, _ = encode_data(Tag("act", mb=i), tensor)
            sent.append(b"".join(bytes(x) for x in buffers))
            channel.put(buffers, small=len(sent[-1]) < 1000)
            tensor.add_(100)   # after put returns the message must not change
        reader = SocketReader(b)
        for i in range(12):
            item = read_message(reader, 1 << 30, strict=True)
            assert item.tag == Tag("act", mb=i)
            assert torch.equal(item.payload, torch.full(((i % 3) * 300_000 + 5,), float(i)))
        assert any(partial)   # a caller began a message and the thread finished it
        assert channel.close(10.0)
        assert channel.error is None
    finally:
        connection.release()
        b.close()


def test_a_message_whole_in_the_read_buffer_is_held_to_max_tensors_as_one_read_in_parts() -> None:
    """The whole-in-buffer decoding checks what the general path checks: with max_tensors=0 a one-tensor
    message is dropped however much of it one recv brought."""
    message = b"".join(bytes(x) for x in encode_data(Tag("act"), torch.ones(3))[0])
    a, b = _pair()
    a.sendall(message * 2)
    reader = SocketReader(b)
    assert reader.fill() == 2 * len(message)   # both whole in the buffer
    for _ in range(2):
        item = read_message(reader, 1 << 30, max_tensors=0)
        assert isinstance(item, CodecError) and "exceed the limit of 0" in str(item)
    assert reader.buffered == 0
    a.close()
    b.close()


def test_a_mid_size_message_arriving_in_parts_is_read_whole_into_the_buffer_and_decoded_from_it(monkeypatch) -> None:
    """A 32 KiB activation fits the read buffer: the bytes still to come are read into it and the message is
    decoded from there (not by the general path); one over max_message_bytes is still dropped, the next read."""
    tensor = torch.arange(8 << 10, dtype=torch.float32)   # 32 KiB
    message = b"".join(bytes(x) for x in encode_data(Tag("act", mb=1), tensor)[0])
    a, b = _pair()
    reader = SocketReader(b)
    assert len(message) * 2 < reader.capacity
    a.sendall(message[:1000])
    assert reader.fill() == 1000   # the prefix and the start of the tensor
    a.sendall(message[1000:] + message)
    general = wire._data
    monkeypatch.setattr(wire, "_data", lambda *args: pytest.fail("took the general path"))
    item = read_message(reader, 1 << 30)
    assert isinstance(item, Decoded) and item.tag == Tag("act", mb=1) and torch.equal(item.payload, tensor)
    monkeypatch.setattr(wire, "_data", general)
    refused = read_message(reader, 1000)   # over max_message_bytes: the general path drops it and names why
    assert isinstance(refused, CodecError) and "exceed the limit of 1000" in str(refused)
    a.sendall(message[:-1])
    a.close()   # the stream ends one byte short
    with pytest.raises(ConnectionError, match="stream ended inside a message"):
        read_message(reader, 1 << 30)
    b.close()


def test_after_a_large_body_a_fill_takes_little_and_after_a_whole_read_the_whole_buffer() -> None:
    """A connection carrying large tensors copies little of each twice (a fill reads AFTER_LARGE after a large
    body); one carrying mid-size ones reads each whole in one recv again once a message was read whole."""
    large = b"".join(bytes(x) for x in encode_data(Tag("act"), torch.ones(1 << 18))[0])   # 1 MiB
    mid = b"".join(bytes(x) for x in encode_data(Tag("act"), torch.ones(8 << 10))[0])     # 32 KiB
    a, b = _pair(sndbuf=4 << 20)
    writer = threading.Thread(target=write_all, args=(a, [large, large, mid, mid]))
    writer.start()
    reader = SocketReader(b)
    assert isinstance(read_message(reader, 1 << 30), Decoded)   # the first large body: read straight in
    assert 0 < reader.fill() <= AFTER_LARGE                       # a fill then takes little of the next one
    assert isinstance(read_message(reader, 1 << 30), Decoded)
    writer.join()   # the rest is in the kernel
    assert isinstance(read_message(reader, 1 << 30), Decoded)   # read whole into the buffer (fill_to) ...
    assert reader.buffered == len(mid)   # ... and the next one with it, by one recv that took the whole room
    assert isinstance(read_message(reader, 1 << 30), Decoded) and reader.buffered == 0
    a.close()
    b.close()


def test_pool_snapshots_handed_to_a_channel_go_back_to_the_pool_once_written(wait_for) -> None:
    """A shaped link hands the channel pool snapshots (taken at send); each goes back to the pool once written,
    whether the caller wrote all of it at once or the thread wrote its rest (else every one is kept for ever)."""
    a, b = _pair()
    connection = Connection(a, SocketReader(a), "peer", "push", "here")
    pool = Pool()
    channel = Channel("node", "peer", lambda: connection, pool)
    assert wait_for(lambda: channel.where == "here")
    reader = SocketReader(b)
    try:
        for i in range(8):
            size = (24 << 10) if i % 2 else (1 << 18)   # 96 KiB (the caller writes it all) or 1 MiB (in part)
            buffers, _ = encode_data(Tag("act", mb=i), torch.ones(size))
            assert channel.put(pool.snapshot(buffers))
            assert read_message(reader, 1 << 30).tag == Tag("act", mb=i)
        # two tensors, the caller's write ending inside the second: the first, written whole, goes back too
        buffers, _ = encode_data(Tag("weights"), {"small": torch.ones(2 << 10), "large": torch.ones(1 << 20)})
        assert channel.put(pool.snapshot(buffers))
        assert read_message(reader, 1 << 30).tag == Tag("weights")
        assert wait_for(lambda: not pool._lent)
        assert pool._idle_bytes > 0
    finally:
        connection.release()
        b.close()
