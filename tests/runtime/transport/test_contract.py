"""One contract for every transport: in-process, sockets and gRPC over loopback, each also with mutual TLS."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence

import pytest
import torch

from splitpipe.network import LinkSpec
from splitpipe.runtime.transport import (
    Message,
    Transport,
    TransportError,
    make_transports,
)
from splitpipe.schedules.ir import Tag

SECRET = b"contract-test-secret"
Links = Mapping[tuple[str, str], LinkSpec]


class TransportContract:
    """What every transport promises; subclasses give `make` (started transports, each told the others)."""

    def make(self, names: Sequence[str], links: Links | None = None, radios: Sequence[str] = ()) -> dict[str, Transport]:
        raise NotImplementedError

    @pytest.fixture
    def nodes(self) -> Iterator[Callable[..., dict[str, Transport]]]:
        made: list[Transport] = []

        def factory(names: Sequence[str] = ("a", "b", "c"), links: Links | None = None,
                    radios: Sequence[str] = ()) -> dict[str, Transport]:
            out = self.make(names, links, radios)
            made.extend(out.values())
            return out

        yield factory
        for transport in made:
            transport.close()

    @staticmethod
    def recv(t: Transport, timeout: float = 10.0) -> Message:
        message = t.receive(timeout)
        assert message is not None, f"node '{t.name}' received nothing within {timeout} s"
        return message

    def test_tensor_round_trip(self, nodes) -> None:
        n = nodes()
        sent = {
            "f32": torch.randn(3, 5), "bf16": torch.randn(4, 2).to(torch.bfloat16),
            "i64": torch.arange(7), "bool": torch.tensor([True, False]), "scalar": torch.tensor(2.5),
            "empty": torch.zeros(0, 4), "strided": torch.randn(6, 4).t(),
        }
        for step, tensor in enumerate(sent.values()):
            n["a"].send("b", Tag("act", owner=1, part=2, step=step, mb=3), tensor)
        for step, (what, tensor) in enumerate(sent.items()):
            m = self.recv(n["b"])
            assert (m.src, m.tag, m.control) == ("a", Tag("act", 1, 2, step, 3), None)
            assert isinstance(m.payload, torch.Tensor)
            assert m.payload.dtype == tensor.dtype and m.payload.shape == tensor.shape, what
            assert torch.equal(m.payload, tensor), what

    def test_payload_is_snapshot_at_send(self, nodes) -> None:
        n = nodes()
        x = torch.zeros(4)
        n["a"].send("b", Tag("grad"), x)
        x.add_(1)
        assert torch.equal(self.recv(n["b"]).payload, torch.zeros(4))

    def test_large_payloads_are_snapshots_at_send(self, nodes) -> None:
        n = nodes()
        x = torch.zeros(2 << 20)   # 8 MiB, more than a socket buffer holds: part may still be unsent
        for step in range(3):
            n["a"].send("b", Tag("act", step=step), x)
            x.add_(1)
        for step in range(3):
            m = self.recv(n["b"], 30.0)
            assert m.tag == Tag("act", step=step) and torch.equal(m.payload, torch.full((2 << 20,), float(step)))

    def test_state_dict(self, nodes) -> None:
        n = nodes()
        weights = {"layer.0.weight": torch.randn(8, 4), "layer.0.bias": torch.randn(8),
                   "steps": torch.tensor(12), "mask": torch.ones(3, dtype=torch.bool)}
        n["c"].send("a", Tag("weights", part=1, step=4), weights)
        m = self.recv(n["a"])
        assert m.src == "c" and m.tag == Tag("weights", part=1, step=4)
        assert isinstance(m.payload, dict) and list(m.payload) == list(weights)
        for key, value in weights.items():
            assert torch.equal(m.payload[key], value), key

    def test_large_tensor_is_chunked(self, nodes) -> None:
        n = nodes()
        big = torch.randn(5 << 20)   # 20 MiB of float32: several chunks
        n["a"].send("b", Tag("act", mb=9), big)
        m = self.recv(n["b"], 30.0)
        assert m.tag == Tag("act", mb=9) and torch.equal(m.payload, big)

    def test_fifo_per_peer(self, nodes) -> None:
        n = nodes()
        for i in range(40):
            n["a"].send("c", Tag("act", mb=i), torch.full((100 * (i % 5) + 1,), float(i)))
            n["b"].send("c", Tag("grad", mb=i), torch.full((3,), float(i)))
        got: dict[str, list[int]] = {"a": [], "b": []}
        for _ in range(80):
            m = self.recv(n["c"])
            got[m.src].append(m.tag.mb)
            assert float(m.payload[0]) == m.tag.mb
        assert got == {"a": list(range(40)), "b": list(range(40))}

    def test_control_messages(self, nodes) -> None:
        n = nodes()
        body = {"type": "assign", "parts": [0, 1], "clock": 1.5, "nested": {"ok": True, "none": None}}
        n["b"].send_control("a", body)
        m = self.recv(n["a"])
        assert (m.src, m.tag, m.payload, m.control) == ("b", None, None, body)
        assert m.received_at == pytest.approx(time.time(), abs=5.0)

    def test_bad_control_body_is_refused_at_send(self, nodes) -> None:
        n = nodes()
        with pytest.raises(TypeError, match="not JSON-serialisable"):
            n["a"].send_control("b", {"tensor": torch.zeros(1)})
        with pytest.raises(TypeError, match="must be a dict"):
            n["a"].send_control("b", ["not", "a", "dict"])  # type: ignore[arg-type]

    def test_unknown_peer_and_bad_payload(self, nodes) -> None:
        n = nodes()
        with pytest.raises(TransportError, match="unknown peer 'zed'"):
            n["a"].send("zed", Tag("act"), torch.zeros(1))
        with pytest.raises(TypeError, match="payload must be a tensor"):
            n["a"].send("b", Tag("act"), [1, 2])  # type: ignore[arg-type]
        assert n["b"].receive(timeout=0.05) is None

    def test_shaping_lower_bound(self, nodes) -> None:
        # 1 MB at 8 Mbit/s is busy 1.0 s on the link, then flies 50 ms: no sooner than 1.05 s.
        n = nodes(("a", "b"), {("a", "b"): LinkSpec.mbit(8, 50)})
        sent_at = time.time()
        n["a"].send("b", Tag("act"), torch.zeros(250_000))   # 1,000,000 bytes
        n["b"].send_control("a", {"unshaped": True})          # the other direction is not shaped
        assert self.recv(n["a"], 1.0).control == {"unshaped": True}
        m = self.recv(n["b"])
        assert m.received_at - sent_at >= 1.05

    def test_a_radio_downlink_takes_one_message_at_a_time(self, nodes) -> None:
        # two peers send 250 kB each to "o" at 1 MB/s: o's one downlink is busy 0.5 s, not 0.25 s.
        links = {(peer, "o"): LinkSpec(1e6, 0.0) for peer in ("c0", "c1")}
        n = nodes(("o", "c0", "c1"), links, radios=("o",))
        sent_at = time.time()
        for peer in ("c0", "c1"):
            n[peer].send("o", Tag("act", owner=int(peer[1])), torch.zeros(62_500))   # 250,000 bytes
        arrivals = sorted(self.recv(n["o"]).received_at - sent_at for _ in range(2))
        assert arrivals[1] >= 0.5

    def test_on_control_takes_control_messages_before_they_are_queued(self, nodes) -> None:
        """What liveness polls rely on: a handler sees each control message as it arrives; one it takes
        (returns True for) is not queued, the rest are; data messages never reach it."""
        n = nodes(("a", "b"))
        seen: list[tuple[str, dict]] = []

        def take_probes(src: str, body: dict) -> bool:
            seen.append((src, body))
            return body["type"] == "probe"
        n["b"].on_control = take_probes
        n["a"].send_control("b", {"type": "probe", "seq": 1})
        n["a"].send("b", Tag("act"), torch.ones(2))
        n["a"].send_control("b", {"type": "ok"})
        received = [self.recv(n["b"]) for _ in range(2)]
        assert sorted(str(m.control) for m in received) == ["None", str({"type": "ok"})]
        assert seen == [("a", {"type": "probe", "seq": 1}), ("a", {"type": "ok"})]
        assert n["b"].receive(0.05) is None

    def test_closed_transport_refuses(self, nodes) -> None:
        n = nodes(("a", "b"))
        with n["a"] as a:
            a.send("b", Tag("act"), torch.ones(2))
        assert torch.equal(self.recv(n["b"]).payload, torch.ones(2))   # sent before close: delivered
        with pytest.raises(TransportError, match="closed"):
            n["a"].send("b", Tag("act"), torch.ones(2))
        with pytest.raises(TransportError, match="node 'a' is closed"):
            n["a"].start()

    def test_start_comes_once(self, nodes) -> None:
        n = nodes(("a", "b"))
        with pytest.raises(TransportError, match="node 'b' is already started"):
            n["b"].start()

    def test_address_is_where_peers_reach_it(self, nodes) -> None:
        for t in nodes().values():
            if t.implicit_peers:
                assert t.address == ""
            else:
                host, _, port = t.address.rpartition(":")
                assert host and int(port) > 0, t.address

    def test_add_peer_again_at_its_address_changes_nothing(self, nodes) -> None:
        n = nodes(("a", "b"))
        n["a"].send("b", Tag("act", mb=0), torch.zeros(2))
        assert self.recv(n["b"]).tag == Tag("act", mb=0)
        n["a"].add_peer("b", n["b"].address)
        n["b"].add_peer("a", n["a"].address)
        n["a"].send("b", Tag("act", mb=1), torch.zeros(2))
        n["b"].send_control("a", {"type": "ok"})
        assert self.recv(n["b"]).tag == Tag("act", mb=1)
        assert self.recv(n["a"]).control == {"type": "ok"}


class TestLocalTransport(TransportContract):
    def make(self, names: Sequence[str], links: Links | None = None, radios: Sequence[str] = ()) -> dict[str, Transport]:
        return make_transports("local", names, links, radios=radios)


class TestSocketTransport(TransportContract):
    def make(self, names: Sequence[str], links: Links | None = None, radios: Sequence[str] = ()) -> dict[str, Transport]:
        return make_transports("socket", names, links, radios=radios, secret=SECRET)


class TestSocketTransportTls(TransportContract):
    @pytest.fixture(autouse=True)
    def _tls(self, tls_for) -> None:
        self.tls_for = tls_for

    def make(self, names: Sequence[str], links: Links | None = None, radios: Sequence[str] = ()) -> dict[str, Transport]:
        tls = {name: self.tls_for(name) for name in names}   # each certificate names its node
        return make_transports("socket", names, links, radios=radios, secret=SECRET, tls=tls)


class TestGrpcTransport(TransportContract):
    def make(self, names: Sequence[str], links: Links | None = None, radios: Sequence[str] = ()) -> dict[str, Transport]:
        return make_transports("grpc", names, links, radios=radios, secret=SECRET, chunk_bytes=1 << 20)   # 20 MiB: 20 chunks


class TestGrpcTransportTls(TransportContract):
    @pytest.fixture(autouse=True)
    def _tls(self, tls_for) -> None:
        self.tls_for = tls_for

    def make(self, names: Sequence[str], links: Links | None = None, radios: Sequence[str] = ()) -> dict[str, Transport]:
        tls = {name: self.tls_for(name) for name in names}   # each certificate names its node
        return make_transports("grpc", names, links, radios=radios, secret=SECRET, tls=tls)


def test_unknown_kind_and_options_of_another_kind_are_named() -> None:
    with pytest.raises(ValueError, match=r"unknown transport kind 'carrier-pigeon'; kinds are local, socket, grpc"):
        make_transports("carrier-pigeon", ["a"])
    with pytest.raises(ValueError, match=r"in-process transports take no secret, chunk_bytes: those are socket and gRPC"):
        make_transports("local", ["a"], secret=SECRET, chunk_bytes=1)
    with pytest.raises(ValueError, match=r"link \('a', 'zed'\) names unknown node 'zed'"):
        make_transports("grpc", ["a"], {("a", "zed"): LinkSpec.mbit(8, 50)})
