"""gRPC transport specifics: authentication, malformed frames off the wire, TLS, streams and secrets."""

from __future__ import annotations

import logging
import re
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
import torch

import splitpipe
from splitpipe.runtime.transport import GrpcTransport, TransportError, load_secret
from splitpipe.runtime.transport.codec import control_to_frames, payload_to_frames
from splitpipe.runtime.transport.proto.splitpipe_pb2 import Ack as ProtoAck
from splitpipe.runtime.transport.proto.splitpipe_pb2 import ControlHeader as ProtoControlHeader
from splitpipe.runtime.transport.proto.splitpipe_pb2 import Frame as ProtoFrame
from splitpipe.runtime.transport.proto.splitpipe_pb2_grpc import LinkStub as ProtoLinkStub
from splitpipe.runtime.transport.security import SECRET_ENV, auth_metadata
from splitpipe.schedules.ir import Tag

SECRET = b"grpc-test-secret"
LOGGER = "splitpipe.transport"


@pytest.fixture
def rx() -> Iterator[GrpcTransport]:
    """A receiver with small limits: 1 MiB messages, 64 KiB chunks (so frames over ~4.06 MiB break gRPC's limit)."""
    t = GrpcTransport("rx", "127.0.0.1:0", {}, SECRET, max_message_bytes=1 << 20, chunk_bytes=64 << 10)
    t.start()
    yield t
    t.close()


def raw_stream(address: str, frames: list[ProtoFrame], metadata: object = None) -> ProtoAck | grpc.StatusCode:
    """Send raw frames on one stream through a hand-made stub; the Ack, or the status code it failed with."""
    with grpc.insecure_channel(address) as channel:
        try:
            md = auth_metadata(SECRET, "raw") if metadata is None else metadata
            return ProtoLinkStub(channel).Stream(iter(frames), metadata=md, timeout=10)
        except grpc.RpcError as exc:
            return exc.code()


def good(message: int) -> list[ProtoFrame]:
    return payload_to_frames(message, Tag("act", mb=message), torch.arange(6, dtype=torch.float32), 8)


def header(frames: list[ProtoFrame], **fields: object) -> list[ProtoFrame]:
    tensor = frames[0].data.tensors[0]
    for key, value in fields.items():
        if key == "shape":
            del tensor.shape[:]
            tensor.shape.extend(value)  # type: ignore[arg-type]
        elif key == "kind":
            frames[0].data.tag.kind = value
        else:
            setattr(tensor, key, value)
    return frames


def control(data: bytes) -> list[ProtoFrame]:
    return [ProtoFrame(message=1, control=ProtoControlHeader(nbytes=len(data))),
            ProtoFrame(message=1, index=1, chunk=data, last=True)]


WIRE_MALFORMED = {
    "bad dtype": (lambda: header(good(1), dtype="object"), "dtype 'object'"),
    "shape vs bytes": (lambda: header(good(1), shape=[2, 4]), "needs 32 bytes, but the header says 24"),
    "oversized": (lambda: payload_to_frames(1, Tag("act"), torch.zeros(1 << 19), 1 << 16), "exceed the limit"),
    "missing chunk": (lambda: [f for f in good(1) if f.index != 1], "frame 1 missing"),
    "truncated": (lambda: good(1)[:2], "truncated at 8 of 24 bytes"),
    "unknown kind": (lambda: header(good(1), kind="evil"), "unknown message kind 'evil'"),
    "control not json": (lambda: control(b"\x80\x04pickle?"), "not UTF-8 JSON"),
    "control not a dict": (lambda: control(b'"text"'), "must be a JSON object"),
    "control nested 5,000 deep": (lambda: control(b"{\"a\":" + b"[" * 5000 + b"]" * 5000 + b"}"), "deeper than"),
    "stride overflow": (lambda: header(good(1), shape=[0, 2**62, 2**62], nbytes=0), "overflows"),
    "too many tensors": (lambda: payload_to_frames(1, Tag("weights"), {str(i): torch.zeros(0) for i in range(5000)}, 8),
                         "5000 tensors exceed the limit of 4096"),
}


@pytest.mark.parametrize("case", list(WIRE_MALFORMED))
def test_malformed_frames_are_dropped_and_receiver_keeps_serving(rx, caplog, case: str) -> None:
    make, reason = WIRE_MALFORMED[case]
    caplog.set_level(logging.WARNING, LOGGER)
    ack = raw_stream(rx.address, [*make(), *good(2)])
    assert isinstance(ack, ProtoAck) and ack.messages == 1          # the stream survived
    m = rx.receive(5.0)
    assert m is not None and (m.src, m.tag) == ("raw", Tag("act", mb=2))
    assert torch.equal(m.payload, torch.arange(6, dtype=torch.float32))
    assert rx.receive(0.05) is None
    assert any("malformed message from node 'raw'" in r.message and reason in r.message for r in caplog.records)
    with GrpcTransport("peer", "127.0.0.1:0", {"rx": rx.address}, SECRET) as peer:   # another peer still served
        peer.send_control("rx", {"after": case})
        assert rx.receive(5.0).control == {"after": case}


def send_until_refused(tx: GrpcTransport, peer: str, timeout: float = 20.0) -> None:
    """Send until the transport raises: a refusal or a failed connect is reported on a later send, when it has happened."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        tx.send(peer, Tag("act"), torch.ones(1))
        time.sleep(0.05)

def test_frame_over_grpc_limit_aborts_only_that_stream(rx, caplog) -> None:
    caplog.set_level(logging.WARNING, LOGGER)
    huge = [ProtoFrame(message=1, control=ProtoControlHeader(nbytes=5 << 20)),
            ProtoFrame(message=1, index=1, chunk=b"x" * (5 << 20), last=True)]
    assert raw_stream(rx.address, huge) == grpc.StatusCode.RESOURCE_EXHAUSTED
    while (notice := rx.receive(0.2)) is not None:   # at most the notice that the stream broke, when gRPC says so
        assert (notice.src, notice.tag, notice.control) == ("raw", None, {"type": "broken"})
    assert isinstance(raw_stream(rx.address, good(3)), ProtoAck)
    assert rx.receive(5.0).tag == Tag("act", mb=3)


def test_wrong_secret_is_refused_and_good_peer_gets_through(rx, caplog) -> None:
    caplog.set_level(logging.WARNING, LOGGER)
    with GrpcTransport("mallory", "127.0.0.1:0", {"rx": rx.address}, b"wrong-secret") as bad:
        with pytest.raises(TransportError, match="UNAUTHENTICATED"):
            send_until_refused(bad, "rx")
    assert rx.receive(0.1) is None
    refusals = [r.message for r in caplog.records if "refused a stream" in r.message]
    assert refusals and "claiming to be node 'mallory'" in refusals[0]
    assert re.search(r"from ipv[46]:", refusals[0])                     # names the peer address
    with GrpcTransport("alice", "127.0.0.1:0", {"rx": rx.address}, SECRET) as alice:
        alice.send("rx", Tag("act", mb=1), torch.ones(3))
        m = rx.receive(5.0)
        assert m is not None and m.src == "alice" and torch.equal(m.payload, torch.ones(3))


def test_missing_or_forged_token_is_unauthenticated(rx) -> None:
    assert raw_stream(rx.address, good(1), metadata=()) == grpc.StatusCode.UNAUTHENTICATED
    forged = (("splitpipe-node", "alice"), ("splitpipe-token", auth_metadata(SECRET, "bob")[1][1]))
    assert raw_stream(rx.address, good(1), metadata=forged) == grpc.StatusCode.UNAUTHENTICATED
    assert rx.receive(0.1) is None


def test_one_stream_per_pair_opened_lazily_and_reused(rx, caplog) -> None:
    caplog.set_level(logging.DEBUG, LOGGER)
    with GrpcTransport("tx", "127.0.0.1:0", {"rx": rx.address}, SECRET) as tx:
        time.sleep(0.1)
        assert not [r for r in caplog.records if "accepted a stream" in r.message]   # nothing sent yet
        for i in range(20):
            tx.send("rx", Tag("act", mb=i), torch.full((4,), float(i)))
            tx.send_control("rx", {"i": i})
        assert len([rx.receive(5.0) for _ in range(40)]) == 40
    assert len([r for r in caplog.records if "accepted a stream from node 'tx'" in r.message]) == 1


def test_connect_timeout_is_reported() -> None:
    with socket.socket() as s:       # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{s.getsockname()[1]}"
    with GrpcTransport("tx", "127.0.0.1:0", {"gone": address}, SECRET, connect_timeout=0.5) as tx:
        with pytest.raises(TransportError, match=r"could not connect to peer 'gone' at .* within 0.5 s"):
            send_until_refused(tx, "gone")


def closing(transport: GrpcTransport) -> threading.Thread:
    """`transport.close()` running in a thread (join it with a deadline)."""
    thread = threading.Thread(target=transport.close, daemon=True)
    thread.start()
    return thread


def test_close_gives_up_at_once_on_a_peer_whose_stream_broke_and_cannot_be_reached(wait_for, caplog) -> None:
    caplog.set_level(logging.INFO, LOGGER)
    rx = GrpcTransport("rx", "127.0.0.1:0", {}, SECRET)
    rx.start()
    tx = GrpcTransport("tx", "127.0.0.1:0", {"rx": rx.address}, SECRET, connect_timeout=300)
    tx.start()
    tx.send_control("rx", {"n": 1})
    assert rx.receive(10.0).control == {"n": 1}
    rx.close()   # rx goes away: tx's stream to it breaks, and nothing listens there any more
    assert wait_for(lambda: tx._senders["rx"].finished)
    tx.send_control("rx", {"n": 2})   # queued on a new stream, which cannot connect
    closer = closing(tx)
    closer.join(60.0)   # far less than connect_timeout
    assert not closer.is_alive(), "close waited for a peer known gone"
    assert any("gave up on peer 'rx'" in r.message and "1 queued message(s) dropped" in r.message
               for r in caplog.records)


def test_close_still_waits_for_a_peer_that_does_not_listen_yet() -> None:
    with socket.socket() as s:       # a port nobody listens on yet
        s.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{s.getsockname()[1]}"
    tx = GrpcTransport("tx", "127.0.0.1:0", {"late": address}, SECRET, connect_timeout=300)
    tx.start()
    tx.send_control("late", {"n": 1})
    closer = closing(tx)
    closer.join(1.0)   # the peer may start within connect_timeout: close waits for it
    assert closer.is_alive()
    with GrpcTransport("late", address, {}, SECRET) as late:
        late.start()
        message = late.receive(60.0)
        assert message is not None and message.control == {"n": 1}
        closer.join(60.0)
        assert not closer.is_alive()


def test_start_address_and_config_errors(rx) -> None:
    assert rx.address == f"127.0.0.1:{rx.port}" and rx.port > 0
    with pytest.raises(TransportError, match="already started"):
        rx.start()
    with pytest.raises(TransportError, match=f"cannot listen on '127.0.0.1:{rx.port}'"):
        GrpcTransport("dup", f"127.0.0.1:{rx.port}", {}, SECRET).start()
    with pytest.raises(ValueError, match="'nowhere' must be HOST:PORT"):
        GrpcTransport("x", "nowhere", {}, SECRET)
    with pytest.raises(ValueError, match="non-empty shared secret"):
        GrpcTransport("x", "127.0.0.1:0", {}, b"")
    with pytest.raises(TransportError, match="not started"):
        _ = GrpcTransport("x", "127.0.0.1:0", {}, SECRET).port


def test_tls_refuses_foreign_ca_and_plaintext(tls_for) -> None:
    with GrpcTransport("n0", "127.0.0.1:0", {}, SECRET, tls=tls_for("n0")) as server:
        server.start()
        for name, tls in (("intruder", tls_for("intruder")), ("plain", None)):
            with GrpcTransport(name, "127.0.0.1:0", {"n0": server.address}, SECRET, tls=tls,
                               connect_timeout=1.0) as client:
                with pytest.raises(TransportError, match="could not connect"):
                    send_until_refused(client, "n0")
        assert server.receive(0.1) is None
        with GrpcTransport("n1", "127.0.0.1:0", {"n0": server.address}, SECRET, tls=tls_for("n1")) as ok:
            ok.send("n0", Tag("act"), torch.ones(1))
            assert server.receive(5.0).src == "n1"


def test_tls_certificates_must_name_their_node(tls_for, wait_for, caplog) -> None:
    def refused(client: GrpcTransport, peer: str) -> bool:
        try:
            client.send(peer, Tag("act"), torch.ones(1))
        except TransportError:
            return True
        return False

    with GrpcTransport("n0", "127.0.0.1:0", {}, SECRET, tls=tls_for("n0")) as server:
        server.start()
        # (1) n2 presents n1's certificate: the receiver refuses the stream
        with caplog.at_level(logging.WARNING, LOGGER), GrpcTransport(
                "n2", "127.0.0.1:0", {"n0": server.address}, SECRET, tls=tls_for("n1"), connect_timeout=2.0) as fake:
            assert wait_for(lambda: refused(fake, "n0"))
        assert "its TLS certificate is for" in caplog.text and "not for that node" in caplog.text
        # (2) n1 thinks n2 listens where n0 does: n0's certificate does not name n2, so n1 never connects
        with GrpcTransport("n1", "127.0.0.1:0", {"n2": server.address}, SECRET, tls=tls_for("n1"),
                           connect_timeout=1.0) as lost:
            assert wait_for(lambda: refused(lost, "n2"))
        assert server.receive(0.1) is None


def test_load_secret(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "secret"
    path.write_bytes(b"s3cret\n")
    assert load_secret(path) == b"s3cret"
    monkeypatch.setenv(SECRET_ENV, "from-env")
    assert load_secret(None) == b"from-env"
    path.write_bytes(b"  \n")
    with pytest.raises(ValueError, match=f"secret file '{path}' is empty"):
        load_secret(path)
    with pytest.raises(ValueError, match="cannot read secret file"):
        load_secret(tmp_path / "missing")
    monkeypatch.delenv(SECRET_ENV)
    with pytest.raises(ValueError, match="SPLITPIPE_SECRET"):
        load_secret()


def test_only_the_transport_package_imports_grpc() -> None:
    root = Path(splitpipe.__file__).parent
    pattern = re.compile(r"^\s*(import grpc|from grpc|.*_pb2)", re.MULTILINE)
    offenders = [p.relative_to(root) for p in root.rglob("*.py")
                 if "transport" not in p.relative_to(root).parts and pattern.search(p.read_text())]
    assert offenders == []


def test_control_frames_through_stub(rx) -> None:
    assert isinstance(raw_stream(rx.address, control_to_frames(1, {"x": 1}, 2)), ProtoAck)
    assert rx.receive(5.0).control == {"x": 1}
