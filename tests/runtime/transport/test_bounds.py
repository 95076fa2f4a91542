"""Bounded state per peer on a live gRPC node: streams per sender capped, released at the end, refusals rate-limited."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator

import grpc
import pytest
import torch

from splitpipe.runtime.transport import GrpcTransport
from splitpipe.runtime.transport.codec import payload_to_frames
from splitpipe.runtime.transport.proto.splitpipe_pb2 import Ack as ProtoAck
from splitpipe.runtime.transport.proto.splitpipe_pb2 import Frame as ProtoFrame
from splitpipe.runtime.transport.proto.splitpipe_pb2_grpc import LinkStub as ProtoLinkStub
from splitpipe.runtime.transport.ratelimit import RateLimitedLog
from splitpipe.runtime.transport.security import auth_metadata
from splitpipe.runtime.transport.servicer import MAX_STREAMS_PER_PEER
from splitpipe.schedules.ir import Tag

SECRET = b"bounds-test-secret"


@pytest.fixture
def rx() -> Iterator[GrpcTransport]:
    t = GrpcTransport("rx", "127.0.0.1:0", {}, SECRET, max_message_bytes=1 << 20, chunk_bytes=64 << 10)
    t.start()
    yield t
    t.close()


def good(message: int) -> list[ProtoFrame]:
    return payload_to_frames(message, Tag("act", mb=message), torch.arange(6, dtype=torch.float32), 8)


class IdleStream:
    """A stream from `name` that sends `frames`, then holds the stream open until released."""

    def __init__(self, address: str, name: str, frames: list[ProtoFrame] = ()) -> None:
        self.release = threading.Event()
        self.channel = grpc.insecure_channel(address)
        self.future = ProtoLinkStub(self.channel).Stream.future(self._frames(list(frames)),
                                                                metadata=auth_metadata(SECRET, name), timeout=20)

    def _frames(self, frames: list[ProtoFrame]) -> Iterator[ProtoFrame]:
        yield from frames
        self.release.wait(20)

    def end(self) -> ProtoAck | grpc.StatusCode:
        self.release.set()
        try:
            return self.future.result()
        except grpc.RpcError as exc:
            return exc.code()
        finally:
            self.channel.close()


def test_streams_per_sender_are_capped_and_others_still_served(rx, caplog, wait_for) -> None:
    caplog.set_level(logging.WARNING, "splitpipe.transport")
    idle = [IdleStream(rx.address, "hog", good(i)) for i in range(MAX_STREAMS_PER_PEER)]
    assert wait_for(lambda: rx._servicer.open_streams() == {"hog": MAX_STREAMS_PER_PEER})
    extra = IdleStream(rx.address, "hog")
    assert extra.end() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert any("already has 4 open" in r.message for r in caplog.records)
    with GrpcTransport("alice", "127.0.0.1:0", {"rx": rx.address}, SECRET) as alice:
        alice.send_control("rx", {"still": "served"})
        assert wait_for(lambda: any(m.control == {"still": "served"} for m in iter(lambda: rx.receive(0.01), None)))
    assert all(isinstance(s.end(), ProtoAck) for s in idle)


def test_what_a_stream_holds_is_released_when_it_ends(rx, wait_for) -> None:
    half = payload_to_frames(1, Tag("act"), torch.zeros(1 << 17), 1 << 16)[:2]   # a header and 64 KiB of 512 KiB
    stream = IdleStream(rx.address, "quitter", half)
    assert wait_for(lambda: rx._servicer.open_streams() == {"quitter": 1})
    assert isinstance(stream.end(), ProtoAck)
    assert wait_for(lambda: rx._servicer.open_streams() == {})
    assert rx.receive(0.1) is None


def test_refusals_are_rate_limited_on_a_live_node(rx, caplog) -> None:
    caplog.set_level(logging.WARNING, "splitpipe.transport")
    bad = [f for i in range(200) for f in good(i) if f.index != 1]   # 200 messages each missing a chunk
    with grpc.insecure_channel(rx.address) as channel:
        ack = ProtoLinkStub(channel).Stream(iter([*bad, *good(1000)]), metadata=auth_metadata(SECRET, "noisy"),
                                            timeout=10)
    assert ack.messages == 1 and rx.receive(5.0).tag == Tag("act", mb=1000)
    assert 1 <= len([r for r in caplog.records if "malformed message from node 'noisy'" in r.message]) <= 5


def test_rate_limited_log_counts_what_it_held_back(caplog) -> None:
    now = [0.0]
    limited = RateLimitedLog(logging.getLogger("test.ratelimit"), burst=2, period=10.0, clock=lambda: now[0])
    caplog.set_level(logging.WARNING, "test.ratelimit")
    assert [limited.warning("a", "bad %d", i) for i in range(5)] == [True, True, False, False, False]
    assert limited.warning("b", "other peer")            # a key of its own
    now[0] = 10.0
    assert limited.warning("a", "bad again")
    assert [r.getMessage() for r in caplog.records] == [
        "bad 0", "bad 1", "other peer", "3 more like the above from a were not logged in the last 10 s", "bad again"]
    with pytest.raises(ValueError, match="burst must be at least 1"):
        RateLimitedLog(logging.getLogger("x"), burst=0)


def test_streams_past_the_pool_are_refused_at_once_not_queued(monkeypatch, wait_for) -> None:
    monkeypatch.setattr("splitpipe.runtime.transport.grpc_transport.MAX_STREAMS", 6)
    with GrpcTransport("small", "127.0.0.1:0", {}, SECRET) as node:
        node.start()
        idle = [IdleStream(node.address, f"n{i}", good(i)) for i in range(6)]   # separate names: no per-peer cap
        assert wait_for(lambda: sum(node._servicer.open_streams().values()) == 6)
        start = time.monotonic()
        assert IdleStream(node.address, "late").end() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert time.monotonic() - start < 5
        assert all(isinstance(s.end(), ProtoAck) for s in idle)
