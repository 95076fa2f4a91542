"""Per-node identity: Ed25519 keys, a fresh challenge per stream, no replay, no speaking as another node."""

from __future__ import annotations

import stat
import threading
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
import torch

from splitpipe.cli import main
from splitpipe.runtime.transport import GrpcTransport, TransportError
from splitpipe.runtime.transport import servicer as servicer_module
from splitpipe.runtime.transport.codec import control_to_frames, payload_to_frames
from splitpipe.runtime.transport.identity import AUTH_FIELD, CHALLENGE_KEY, Identity, load_identity, make_keys
from splitpipe.runtime.transport.proto.splitpipe_pb2 import Ack as ProtoAck
from splitpipe.runtime.transport.proto.splitpipe_pb2 import Frame as ProtoFrame
from splitpipe.runtime.transport.proto.splitpipe_pb2_grpc import LinkStub as ProtoLinkStub
from splitpipe.runtime.transport.security import NODE_KEY
from splitpipe.schedules.ir import Tag


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("keys")
    assert main(["keys", "--nodes", "rx,alice,bob", "--out", str(folder)]) == 0
    return folder


@pytest.fixture
def rx(keys: Path) -> Iterator[GrpcTransport]:
    t = GrpcTransport("rx", "127.0.0.1:0", {}, None, identity=load_identity("rx", keys))
    t.start()
    yield t
    t.close()


def signed_stream(address: str, name: str, answer, frames: list[ProtoFrame]) -> tuple[object, str | None]:
    """A hand-made stream claiming `name`: message 0 is answer(challenge) (a list of frames), then `frames`."""
    ready, seen, holder = threading.Event(), [], []

    def requests() -> Iterator[ProtoFrame]:
        ready.wait()
        challenge = dict(holder[0].initial_metadata() or ()).get(CHALLENGE_KEY)
        seen.append(challenge)
        if challenge is not None:
            yield from answer(challenge)
            yield from frames

    with grpc.insecure_channel(address) as channel:
        holder.append(ProtoLinkStub(channel).Stream.future(requests(), metadata=((NODE_KEY, name),), timeout=10))
        ready.set()
        try:
            return holder[0].result(), seen[0] if seen else None
        except grpc.RpcError as exc:
            return exc.code(), seen[0] if seen else None


def data(mb: int) -> list[ProtoFrame]:
    return payload_to_frames(1, Tag("act", mb=mb), torch.arange(4.0), 8)


def test_keys_are_private_files_never_overwritten(keys: Path) -> None:
    assert stat.S_IMODE((keys / "alice.key").stat().st_mode) == 0o600
    assert set(load_identity("alice", keys).peers) == {"rx", "alice", "bob"}
    with pytest.raises(ValueError, match="alice.key already exists"):
        make_keys(["alice"], keys)
    with pytest.raises(ValueError, match="node name '../x' must be"):
        make_keys(["../x"], keys)
    with pytest.raises(ValueError, match="cannot read the keys of node 'carol'"):
        load_identity("carol", keys)


def test_signed_streams_deliver_as_the_sender(rx, keys: Path) -> None:
    with GrpcTransport("alice", "127.0.0.1:0", {"rx": rx.address}, None, identity=load_identity("alice", keys)) as a:
        a.send("rx", Tag("act", mb=3), torch.ones(2))
        a.send_control("rx", {"k": 1})
        first, second = rx.receive(5.0), rx.receive(5.0)
    assert (first.src, first.tag, second.control) == ("alice", Tag("act", mb=3), {"k": 1})


def test_a_node_cannot_speak_as_another(rx, keys: Path) -> None:
    bob = load_identity("bob", keys)
    posing = Identity("alice", bob.key, bob.peers)              # bob's key, alice's name
    with GrpcTransport("alice", "127.0.0.1:0", {"rx": rx.address}, None, identity=posing, connect_timeout=5) as fake:
        fake.send_control("rx", {"type": "error"})
        assert rx.receive(1.0) is None
        with pytest.raises(TransportError, match="UNAUTHENTICATED"):
            fake.send_control("rx", {"type": "error"})
    assert signed_stream(rx.address, "carol", lambda c: [], data(1))[0] == grpc.StatusCode.UNAUTHENTICATED


def test_a_recorded_handshake_cannot_be_replayed(rx, keys: Path) -> None:
    alice, recorded = load_identity("alice", keys), []

    def sign(challenge: str) -> list[ProtoFrame]:
        recorded.extend(control_to_frames(0, {AUTH_FIELD: alice.sign(challenge, "rx")}, 4096))
        return recorded

    ack, first = signed_stream(rx.address, "alice", sign, data(1))
    assert isinstance(ack, ProtoAck) and ack.messages == 1 and rx.receive(5.0).src == "alice"
    code, second = signed_stream(rx.address, "alice", lambda c: recorded, data(2))
    assert code == grpc.StatusCode.UNAUTHENTICATED and second != first     # a fresh challenge each stream
    assert rx.receive(0.2) is None


def test_a_sender_that_never_answers_is_cut_off(rx, monkeypatch, wait_for) -> None:
    monkeypatch.setattr(servicer_module, "HANDSHAKE_S", 0.3)
    release = threading.Event()

    def silent(challenge: str) -> Iterator[ProtoFrame]:
        release.wait(5)
        yield from ()

    code, _ = signed_stream(rx.address, "alice", silent, [])
    release.set()
    assert code in (grpc.StatusCode.CANCELLED, grpc.StatusCode.UNAUTHENTICATED)
    assert wait_for(lambda: rx._servicer.open_streams() == {})
