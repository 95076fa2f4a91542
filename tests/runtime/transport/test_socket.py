"""Socket transport specifics: mutual handshakes, no replay, malformed input off the wire, caps, dial-out nodes."""

from __future__ import annotations

import logging
import socket
import struct
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from splitpipe.network import LinkSpec
from splitpipe.runtime.address import probe
from splitpipe.runtime.transport import SocketTransport, TransportError
from splitpipe.runtime.transport import listener as listener_module
from splitpipe.runtime.transport.channel import Connection
from splitpipe.runtime.transport.handshake import HandshakeError, SharedSecret, dial_handshake
from splitpipe.runtime.transport.identity import Identity, load_identity, make_keys
from splitpipe.runtime.transport.wire import (
    CONTROL,
    DATA,
    PREFIX,
    TensorSpec,
    encode_control,
    encode_data,
    encode_header,
)
from splitpipe.schedules.ir import Tag

SECRET = b"socket-test-secret"
LOGGER = "splitpipe.transport"


@pytest.fixture
def rx() -> Iterator[SocketTransport]:
    t = SocketTransport("rx", "127.0.0.1:0", {}, SECRET, max_message_bytes=1 << 20, connect_timeout=5.0)
    t.start()
    yield t
    t.close()


def soon(timeout: float = 30.0) -> Iterator[None]:
    """Iterations until `timeout` s have passed: for a refusal that a later send reports."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        yield


def dial(address: str, name: str = "raw", secret: bytes = SECRET, to: str = "rx", mode: str = "push") -> Connection:
    """A hand-made connection that passed the handshake as `name`; write raw bytes with .write([...])."""
    host, _, port = address.rpartition(":")
    sock = socket.create_connection((host, int(port)), timeout=5)
    reader = sock.makefile("rb")
    connection = Connection(sock, reader, to, mode, address)
    try:
        dial_handshake(reader, connection.write, SharedSecret(name, secret), to, mode)
    except BaseException:
        connection.release()
        raise
    return connection


def good(mb: int) -> bytes:
    return b"".join(encode_data(Tag("act", mb=mb), torch.arange(6, dtype=torch.float32))[0])


def data(head: bytes, body: bytes, body_len: int | None = None) -> bytes:
    return PREFIX.pack(DATA, len(head), len(body) if body_len is None else body_len) + head + body


def spec_header(kind: str = "act", dims: tuple[int, ...] = (6,), code: int = 1, count: int = 1,
                state_dict: bool = False) -> bytes:
    head = encode_header(Tag(kind), state_dict, [TensorSpec("", "float32", dims, 24)] * count)
    if code != 1:   # float32 is code 1: patch the dtype byte of the first tensor
        at = 1 + len(kind) + struct.calcsize("!qqqqBI") + 2
        head = head[:at] + bytes([code]) + head[at + 1:]
    return head


def control(body: bytes) -> bytes:
    return PREFIX.pack(CONTROL, 0, len(body)) + body


MALFORMED = {
    "bad dtype code": (lambda: data(spec_header(code=99), bytes(24)), "dtype code 99"),
    "shape vs bytes": (lambda: data(spec_header(dims=(2, 4)), bytes(24)), "declares 32 tensor bytes, the prefix 24"),
    "oversized": (lambda: data(spec_header(dims=(1 << 19,)), bytes(1 << 21)), "exceed the limit of 1048576"),
    "unknown kind": (lambda: data(spec_header(kind="evil"), bytes(24)), "unknown message kind 'evil'"),
    "truncated header": (lambda: data(spec_header()[:-3], bytes(24)), "truncated or malformed"),
    "unknown message kind byte": (lambda: PREFIX.pack(9, 0, 4) + b"abcd", "unknown message kind 9"),
    "control not json": (lambda: control(b"\x80\x04pickle?"), "not UTF-8 JSON"),
    "control not a dict": (lambda: control(b'"text"'), "must be a JSON object"),
    "control nested 5,000 deep": (lambda: control(b'{"a":' + b"[" * 5000 + b"]" * 5000 + b"}"), "deeper than"),
    "stride overflow": (lambda: data(spec_header(dims=(0, 2**62, 2**62)), b""), "overflows"),
    "negative dimension": (lambda: data(spec_header(dims=(-2, -3)), bytes(24)), "negative dimension"),
    "too many tensors": (lambda: data(spec_header(dims=(0,), count=5000, state_dict=True), b""),
                         "5000 tensors exceed the limit of 4096"),
    "header over 1 MiB": (lambda: PREFIX.pack(DATA, (1 << 20) + 1, 0) + bytes((1 << 20) + 1), "header of"),
    "bool byte 7": (lambda: b"".join(encode_data(Tag("act"), torch.tensor([True, False]))[0])[:-1] + b"\x07",
                    "bytes other than 0 and 1"),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_messages_are_dropped_and_the_connection_goes_on(rx, caplog, wait_for, case: str) -> None:
    make, reason = MALFORMED[case]
    caplog.set_level(logging.WARNING, LOGGER)
    connection = dial(rx.address)
    connection.write([make(), good(2)])
    m = rx.receive(10.0)
    assert m is not None and (m.src, m.tag) == ("raw", Tag("act", mb=2))
    assert torch.equal(m.payload, torch.arange(6, dtype=torch.float32))
    assert wait_for(lambda: any("malformed message from node 'raw'" in r.message and reason in r.message
                                for r in caplog.records))
    connection.write([good(3)])   # the same connection still delivers
    assert rx.receive(10.0).tag == Tag("act", mb=3)
    connection.release()


def test_a_connection_cut_inside_a_message_is_reported_as_broken(rx, wait_for) -> None:
    connection = dial(rx.address)
    connection.write([good(1), good(2)[:20]])
    assert rx.receive(10.0).tag == Tag("act", mb=1)
    connection.release()
    m = rx.receive(10.0)
    assert m is not None and (m.src, m.control) == ("raw", {"type": "broken"})


def test_wrong_secret_is_refused_and_named_and_a_good_peer_gets_through(rx, caplog) -> None:
    caplog.set_level(logging.WARNING, LOGGER)
    with SocketTransport("mallory", "127.0.0.1:0", {"rx": rx.address}, b"wrong-secret", connect_timeout=5) as bad:
        with pytest.raises(TransportError, match="did not prove to be 'rx'"):
            for _ in soon():   # the refusal is reported on this send or a later one
                bad.send("rx", Tag("act"), torch.ones(3))
                rx.receive(0.02)
    with pytest.raises(HandshakeError, match="did not prove to be 'rx'"):
        dial(rx.address, secret=b"wrong", name="mallory")
    assert rx.receive(0.1) is None
    refusals = [r.message for r in caplog.records if "refused a connection" in r.message]
    assert any("claiming to be node 'mallory'" in r and "127.0.0.1:" in r for r in refusals)
    with SocketTransport("alice", "127.0.0.1:0", {"rx": rx.address}, SECRET) as alice:
        alice.send("rx", Tag("act", mb=1), torch.ones(3))
        m = rx.receive(10.0)
        assert m is not None and m.src == "alice" and torch.equal(m.payload, torch.ones(3))


def test_a_reachability_probe_is_quiet_but_a_cut_hello_is_refused_out_loud(rx, caplog, wait_for) -> None:
    """The coordinator's probe (address.probe) opens and closes; one byte of a hello and then nothing is refused."""
    caplog.set_level(logging.DEBUG, LOGGER)
    assert probe(rx.address, 5.0) is None
    assert wait_for(lambda: any("closed before its first byte" in r.message for r in caplog.records))
    host, _, port = rx.address.rpartition(":")
    with socket.create_connection((host, int(port)), timeout=5) as cut:
        cut.sendall(encode_control({"node": "raw"})[0][:1])
    assert wait_for(lambda: any(r.levelno == logging.WARNING for r in caplog.records))
    warnings = [r.message for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "refused a connection" in warnings[0], warnings


def test_a_recorded_handshake_cannot_be_replayed(rx) -> None:
    recorded: list[bytes] = []
    host, _, port = rx.address.rpartition(":")
    sock = socket.create_connection((host, int(port)), timeout=5)
    reader = sock.makefile("rb")

    def write(buffers: list) -> None:
        recorded.append(b"".join(bytes(b) for b in buffers))
        sock.sendall(recorded[-1])

    dial_handshake(reader, write, SharedSecret("alice", SECRET), "rx", "push")
    sock.sendall(good(1))
    assert rx.receive(10.0).src == "alice"
    sock.close()
    replay = socket.create_connection((host, int(port)), timeout=5)   # the same bytes, a new connection
    replay.sendall(b"".join(recorded))
    replay.settimeout(5)
    answer = b""
    while chunk := replay.recv(4096):
        answer += chunk
    replay.close()
    assert b"authentication failed" in answer
    assert rx.receive(0.3) is None


def test_a_node_cannot_pass_itself_off_as_the_peer_it_was_dialled_as(rx) -> None:
    with SocketTransport("tx", "127.0.0.1:0", {"bob": rx.address}, SECRET, connect_timeout=2) as tx:
        with pytest.raises(TransportError, match="refused the connection: this is node 'rx'"):
            for _ in soon():
                tx.send_control("bob", {"type": "hello"})
                rx.receive(0.02)
    assert rx.receive(0.1) is None


def test_connections_per_peer_are_capped_and_others_still_served(rx, caplog, wait_for) -> None:
    caplog.set_level(logging.WARNING, LOGGER)
    hogs = [dial(rx.address, "hog") for _ in range(listener_module.MAX_CONNECTIONS_PER_PEER)]
    assert wait_for(lambda: rx.open_connections() == {"hog": listener_module.MAX_CONNECTIONS_PER_PEER})
    with pytest.raises(HandshakeError, match="too many connections"):
        dial(rx.address, "hog")
    with SocketTransport("alice", "127.0.0.1:0", {"rx": rx.address}, SECRET) as alice:
        alice.send_control("rx", {"still": "served"})
        assert rx.receive(10.0).control == {"still": "served"}
    for hog in hogs:
        hog.write([PREFIX.pack(3, 0, 0)])   # bye
        hog.release()
    assert wait_for(lambda: "hog" not in rx.open_connections())


def test_silent_connections_are_cut_after_the_handshake_time(monkeypatch, wait_for) -> None:
    monkeypatch.setattr(listener_module, "HANDSHAKE_S", 0.3)
    monkeypatch.setattr(listener_module, "MAX_HANDSHAKES", 3)
    with SocketTransport("rx", "127.0.0.1:0", {}, SECRET) as node:
        node.start()
        host, _, port = node.address.rpartition(":")
        silent = [socket.create_connection((host, int(port))) for _ in range(6)]   # 3 over the cap: closed at once
        for s in silent:
            s.settimeout(30)
            assert s.recv(1) == b""   # closed by the node: over the cap at once, the others after 0.3 s
        assert wait_for(lambda: node._listener.handshakes == 0)
        with SocketTransport("alice", "127.0.0.1:0", {"rx": node.address}, SECRET) as alice:
            alice.send_control("rx", {"after": "flood"})
            assert node.receive(10.0).control == {"after": "flood"}
        for s in silent:
            s.close()


def test_connect_timeout_is_reported() -> None:
    with socket.socket() as s:       # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{s.getsockname()[1]}"
    with SocketTransport("tx", "127.0.0.1:0", {"gone": address}, SECRET, connect_timeout=0.5) as tx:
        with pytest.raises(TransportError, match=r"could not connect to peer 'gone' at .* within 0.5 s"):
            for _ in soon():
                tx.send("gone", Tag("act"), torch.ones(1))
                tx.receive(0.05)


def test_start_address_and_config_errors(rx) -> None:
    assert rx.address == f"127.0.0.1:{rx.port}" and rx.port > 0
    with pytest.raises(TransportError, match=f"cannot listen on '127.0.0.1:{rx.port}': port {rx.port} is taken"):
        SocketTransport("dup", f"127.0.0.1:{rx.port}", {}, SECRET).start()
    with pytest.raises(ValueError, match="'nowhere' must be HOST:PORT"):
        SocketTransport("x", "nowhere", {}, SECRET)
    with pytest.raises(ValueError, match="non-empty shared secret"):
        SocketTransport("x", "127.0.0.1:0", {}, b"")
    with pytest.raises(TransportError, match="does not listen"):
        _ = SocketTransport("x", None, {}, SECRET).port


# -- dial-out: a node that never listens ------------------------------------------------------------
def test_a_dial_out_node_is_reached_on_the_connections_it_opened(rx, wait_for) -> None:
    with SocketTransport("phone", None, {"rx": rx.address}, SECRET) as phone:
        phone.start()
        assert phone.address == ""
        assert wait_for(lambda: rx.open_connections().get("phone") == 1)   # its pull connection
        rx.send("phone", Tag("grad", mb=1), torch.full((3,), 2.0))          # rx speaks first
        m = phone.receive(10.0)
        assert m is not None and (m.src, m.tag) == ("rx", Tag("grad", mb=1)) and torch.equal(m.payload,
                                                                                            torch.full((3,), 2.0))
        phone.send("rx", Tag("act", mb=2), torch.ones(2))
        assert rx.receive(10.0).tag == Tag("act", mb=2)
        rx.send_control("phone", {"type": "stop"})
        assert phone.receive(10.0).control == {"type": "stop"}
    assert rx.receive(0.2) is None   # it said bye: no "broken"


def test_a_dial_out_node_learns_peers_later_and_dials_them(rx, wait_for) -> None:
    with SocketTransport("phone", None, {}, SECRET) as phone:
        phone.start()
        phone.add_peer("rx", rx.address)
        assert wait_for(lambda: rx.open_connections().get("phone") == 1)
        rx.send_control("phone", {"n": 1})
        assert phone.receive(10.0).control == {"n": 1}


def test_a_peer_that_neither_listens_nor_dials_is_named() -> None:
    with SocketTransport("srv", "127.0.0.1:0", {}, SECRET, connect_timeout=0.3) as srv:
        srv.start()
        with pytest.raises(TransportError, match="unknown peer 'ghost'"):
            srv.send_control("ghost", {"n": 1})
        srv.add_peer("phone", "")   # a dial-out peer that never dials
        srv.send_control("phone", {"n": 1})
        with pytest.raises(TransportError, match="peer 'phone' does not listen and did not dial node 'srv'"):
            for _ in soon():
                srv.send_control("phone", {"n": 2})
                srv.receive(0.05)


def test_a_dial_out_node_that_dies_is_reported_as_broken(rx, wait_for) -> None:
    phone = SocketTransport("phone", None, {"rx": rx.address}, SECRET)
    phone.start()
    phone.send_control("rx", {"hello": 1})
    assert rx.receive(10.0).control == {"hello": 1}
    for connection in list(phone._connections) + [c for ch in phone._channels.values()
                                                  for c in [ch._connection] if c]:
        connection.release()   # as if its process died: no bye
    m = rx.receive(10.0)
    assert m is not None and (m.src, m.control) == ("phone", {"type": "broken"})
    phone.close()


# -- per-node identity ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("keys")
    make_keys(["rx", "alice", "bob"], folder)
    return folder


def test_identity_connections_deliver_as_the_sender_and_no_one_speaks_as_another(keys: Path) -> None:
    with SocketTransport("rx", "127.0.0.1:0", {}, None, identity=load_identity("rx", keys)) as node:
        node.start()
        with SocketTransport("alice", None, {"rx": node.address}, None, identity=load_identity("alice", keys)) as a:
            a.start()
            a.send("rx", Tag("act", mb=3), torch.ones(2))
            assert node.receive(10.0).src == "alice"
            node.send_control("alice", {"k": 1})   # back on alice's own pull connection
            assert a.receive(10.0).control == {"k": 1}
        bob = load_identity("bob", keys)
        posing = Identity("alice", bob.key, bob.peers)   # bob's key, alice's name
        with SocketTransport("alice", "127.0.0.1:0", {"rx": node.address}, None, identity=posing,
                             connect_timeout=2) as fake:
            with pytest.raises(TransportError, match="refused the connection"):
                for _ in soon():
                    fake.send_control("rx", {"type": "error"})
                    node.receive(0.02)
        assert node.receive(0.1) is None


def test_on_a_shaped_link_a_failed_connection_is_reported_to_the_sender() -> None:
    """The shaper hands a message over on its own thread, after the channel it was sent on failed: the
    failure reaches no caller there, so the next send raises it (before, that send quietly opened a
    new channel and the message held by the link was lost without a word)."""
    with socket.socket() as s:       # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{s.getsockname()[1]}"
    links = {("tx", "gone"): LinkSpec(1e5, 0.0)}   # 100 kB/s: the message is handed over after ~1 s
    with SocketTransport("tx", "127.0.0.1:0", {"gone": address}, SECRET, links=links, connect_timeout=0.3) as tx:
        tx.send("gone", Tag("act"), torch.ones(1 << 15))   # 128 KiB; the channel's connect fails meanwhile
        assert tx._shaper.drain(30.0)
        with pytest.raises(TransportError, match="could not connect to peer 'gone'"):
            tx.send("gone", Tag("act"), torch.ones(1))


def test_tls_refuses_a_foreign_ca_and_plaintext(tls_for) -> None:
    with SocketTransport("n0", "127.0.0.1:0", {}, SECRET, tls=tls_for("n0")) as server:
        server.start()
        for name, tls in (("intruder", tls_for("intruder")), ("plain", None)):
            with SocketTransport(name, "127.0.0.1:0", {"n0": server.address}, SECRET, tls=tls,
                                 connect_timeout=1.0) as client:
                with pytest.raises(TransportError, match="could not connect to peer 'n0'"):
                    for _ in soon():
                        client.send("n0", Tag("act"), torch.ones(1))
                        server.receive(0.05)
        assert server.receive(0.1) is None
        with SocketTransport("n1", "127.0.0.1:0", {"n0": server.address}, SECRET, tls=tls_for("n1")) as ok:
            ok.send("n0", Tag("act"), torch.ones(1))
            assert server.receive(10.0).src == "n1"



def test_tls_certificates_must_name_their_node(tls_for, wait_for, caplog) -> None:
    def refused(client: SocketTransport, peer: str) -> bool:
        try:
            client.send(peer, Tag("act"), torch.ones(1))
        except TransportError:
            return True
        return False

    with SocketTransport("n0", "127.0.0.1:0", {}, SECRET, tls=tls_for("n0")) as server:
        server.start()
        # (1) n2 presents n1's certificate: the receiver refuses the connection
        with caplog.at_level(logging.WARNING), SocketTransport(
                "n2", "127.0.0.1:0", {"n0": server.address}, SECRET, tls=tls_for("n1"), connect_timeout=2.0) as fake:
            assert wait_for(lambda: refused(fake, "n0"))
        assert "its TLS certificate is for" in caplog.text and "not for that node" in caplog.text
        # (2) n1 thinks n2 listens where n0 does: n0's certificate does not name n2, so n1 never connects
        with SocketTransport("n1", "127.0.0.1:0", {"n2": server.address}, SECRET, tls=tls_for("n1"),
                             connect_timeout=1.0) as lost:
            assert wait_for(lambda: refused(lost, "n2"))
        assert server.receive(0.1) is None

def test_the_struct_header_round_trips_and_guards_its_length() -> None:
    from splitpipe.runtime.transport.wire import parse_header
    head = encode_header(Tag("weights", 1, 2, 3, 4), True, [TensorSpec("a.w", "bfloat16", (2, 3), 12),
                                                            TensorSpec("b", "bool", (), 1)])
    tag, state_dict, specs = parse_header(head)
    assert (tag, state_dict) == (Tag("weights", 1, 2, 3, 4), True)
    assert [(s.key, s.dtype, tuple(s.shape), s.nbytes) for s in specs] == [("a.w", "bfloat16", (2, 3), 12),
                                                                          ("b", "bool", (), 1)]
    with pytest.raises(Exception, match="after its last tensor"):
        parse_header(head + b"x")
    assert encode_control({"a": 1})[0][:1] == bytes([CONTROL])


def test_keeping_freed_memory_is_a_setting_not_a_failure() -> None:
    from splitpipe.runtime.transport.memory import keep_freed_memory
    assert keep_freed_memory() in (True, False)   # glibc takes it; elsewhere nothing changes


@pytest.mark.parametrize("moved", ["before it dials", "after it dials"])
def test_a_restarted_dial_out_node_is_reached_though_a_channel_to_its_old_process_waited(
        wait_for, moved: str) -> None:
    """Sends to a dead dial-out node leave a channel waiting for it to dial in; that channel must not take
    (and close with a bye) the connection the restarted node opens, or the node never hears from us again."""
    with SocketTransport("rx", "127.0.0.1:0", {}, SECRET, connect_timeout=5.0) as rx:
        rx.start()
        old = SocketTransport("phone", None, {"rx": rx.address}, SECRET)
        old.start()
        assert wait_for(lambda: rx.open_connections().get("phone") == 1)
        rx.send_control("phone", {"n": 0})
        assert old.receive(10.0).control == {"n": 0}
        old._stopping.set()   # as if its process died: no bye, no redial
        for connection in list(old._connections):
            connection.release()
        deadline = time.monotonic() + 30
        while True:   # rx goes on sending (heartbeats) until a channel waits for the dead node to dial in
            try:
                rx.send_control("phone", {"n": 0})
            except TransportError:
                pass
            stale = rx._channels.get("phone")
            if stale is not None and stale.connection is None and not stale.finished:
                break
            assert time.monotonic() < deadline
            time.sleep(0.02)
        if moved == "before it dials":
            rx.add_peer("phone", "", moved=True)
        with SocketTransport("phone", None, {"rx": rx.address}, SECRET) as new:
            new.start()
            if moved == "after it dials":
                assert wait_for(lambda: stale.connection is not None)   # the waiting channel took it
                rx.add_peer("phone", "", moved=True)
            rx.send_control("phone", {"n": 1})
            while True:
                m = new.receive(10.0)
                assert m is not None, "the restarted node heard nothing"
                if m.control == {"n": 1}:
                    break
        old.close()
