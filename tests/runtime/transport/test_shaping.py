"""LinkShaper follows the emulator's link model: FIFO at the bandwidth, latency off the link."""

from __future__ import annotations

import math
import threading
import time

import pytest

from splitpipe.network import RAW, TCP, Framing, LinkSpec
from splitpipe.runtime.shaping import LinkShaper, NodeShaper, is_unshaped


def emulator_arrivals(link: LinkSpec, sends: list[tuple[float, int]]) -> list[float]:
    """engine/events.py: begin = max(send, link_free); end = begin + bytes/bw; arrival = end + latency."""
    link_free, out = 0.0, []
    for start, nbytes in sends:
        begin = max(start, link_free)
        end = begin + link.transfer_s(nbytes)
        link_free = end
        out.append(end + link.latency_s)
    return out


def test_schedule_matches_the_emulator() -> None:
    link = LinkSpec.mbit(8, 50, RAW)   # 1e6 B/s, 50 ms, payload only
    sends = [(0.0, 1_000_000), (0.1, 500_000), (0.2, 0), (3.0, 250_000), (3.1, 10)]
    shaper = LinkShaper({"peer": link})
    due = [shaper.schedule("peer", n, now=t) for t, n in sends]
    assert due == pytest.approx(emulator_arrivals(link, sends))
    assert due[:3] == pytest.approx([1.05, 1.55, 1.55])   # latency does not hold the link


def test_links_are_independent_and_unknown_links_unshaped() -> None:
    shaper = LinkShaper({"x": LinkSpec(1000.0, 0.5), "y": LinkSpec(math.inf, 0.2)})
    assert shaper.schedule("x", 1000, now=0.0) == pytest.approx(1.5)
    assert shaper.schedule("y", 10**9, now=0.0) == pytest.approx(0.2)
    assert shaper.schedule("x", 1000, now=0.0) == pytest.approx(2.5)
    assert shaper.schedule("z", 10**9, now=7.0) == 7.0
    assert is_unshaped(None) and is_unshaped(LinkSpec(math.inf, 0.0)) and not is_unshaped(LinkSpec(math.inf, 0.1))
    with pytest.raises(ValueError, match="-1"):
        shaper.schedule("x", -1)


def test_unshaped_delivery_is_inline() -> None:
    got: list[int] = []
    shaper = LinkShaper({})
    shaper.submit("p", 100, lambda: got.append(threading.get_ident()))
    assert got == [threading.get_ident()]


def test_deliveries_wait_for_due_time_in_order() -> None:
    # latency 0.2 s on "slow", none on "fast": per-link FIFO, and "fast" overtakes "slow".
    shaper = LinkShaper({"slow": LinkSpec(1e6, 0.2), "fast": LinkSpec(1e6, 0.0)})
    got: list[tuple[str, int, float]] = []
    start = time.monotonic()
    due = {}
    for i in range(3):
        due[("slow", i)] = shaper.submit("slow", 10_000, lambda i=i: got.append(("slow", i, time.monotonic())))
    due[("fast", 0)] = shaper.submit("fast", 10_000, lambda: got.append(("fast", 0, time.monotonic())))
    assert shaper.drain(5.0) and shaper.pending() == 0
    assert [(k, i) for k, i, _ in got] == [("fast", 0), ("slow", 0), ("slow", 1), ("slow", 2)]
    for link, i, at in got:
        assert at >= due[(link, i)] - 1e-3
    assert due[("slow", 2)] - start >= 0.23 - 1e-6                      # 3 x 10 ms on the link + 200 ms, at least
    assert due[("slow", 2)] - due[("slow", 0)] >= 0.02 - 1e-6          # FIFO: each waits for the one before
    shaper.close()


def test_close_drops_what_is_not_due() -> None:
    shaper = LinkShaper({"p": LinkSpec(1e6, 30.0)})
    got: list[int] = []
    shaper.submit("p", 1, lambda: got.append(1))
    shaper.close(timeout=0.05)
    assert got == [] and shaper.pending() == 0
    with pytest.raises(RuntimeError, match="closed"):
        shaper.submit("p", 1, lambda: None)


def test_failing_delivery_does_not_stop_the_link() -> None:
    shaper = LinkShaper({"p": LinkSpec(1e9, 0.01)})
    got: list[int] = []
    shaper.submit("p", 1, lambda: 1 / 0)
    shaper.submit("p", 1, lambda: got.append(2))
    assert shaper.drain(5.0) and got == [2]
    shaper.close()


def test_a_failed_delayed_delivery_is_raised_by_the_next_send_to_that_peer() -> None:
    shaper = NodeShaper("a", {("a", "b"): LinkSpec(1e9, 0.0), ("a", "c"): LinkSpec(1e9, 0.0)})

    def fails() -> None:
        raise ConnectionError("peer b is gone")

    got: list[str] = []
    shaper.send("b", 10, fails)
    assert shaper.drain(5.0)
    shaper.send("c", 10, lambda: got.append("c"))   # another peer's link is not concerned
    with pytest.raises(ConnectionError, match="peer b is gone"):
        shaper.send("b", 10, lambda: got.append("b1"))   # not sent: the sender hears of the loss first
    shaper.send("b", 10, lambda: got.append("b2"))   # reported once
    assert shaper.drain(5.0) and got == ["c", "b2"]
    shaper.send("b", 10, fails)
    assert shaper.drain(5.0)
    shaper.forget_failure("b")   # b restarted: its old process's loss is not raised to the new one
    shaper.send("b", 10, lambda: got.append("b3"))
    assert shaper.drain(5.0) and got == ["c", "b2", "b3"]
    shaper.close()


def test_a_failed_delivery_on_an_unshaped_link_is_raised_once_by_its_own_send() -> None:
    shaper = NodeShaper("a", {("a", "b"): LinkSpec(math.inf, 0.0)})   # held here, but it delays nothing
    got: list[str] = []

    def fails() -> None:
        raise ConnectionError("peer b is gone")

    with pytest.raises(ConnectionError, match="peer b is gone"):
        shaper.send("b", 10, fails)   # delivered inline: the caller hears it now ...
    shaper.send("b", 10, lambda: got.append("b"))   # ... and not again with the next message
    assert got == ["b"]
    shaper.close()


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_tcp_framing_charges_headers_here_and_acks_on_the_way_back() -> None:
    # a -> b at 1e6 B/s line rate with TCP framing: 1448 payload bytes take 1514 on the wire;
    # b's ACKs of them (one 66-byte ACK per 2 segments) hold b -> a for 33 bytes' time.
    up, down = LinkSpec(1e6, 0.0, TCP), LinkSpec(1e6, 0.0, TCP)
    clock = FakeClock()
    a = NodeShaper("a", {("a", "b"): up, ("b", "a"): down}, clock=clock)
    b = NodeShaper("b", {("a", "b"): up, ("b", "a"): down}, clock=clock)
    got: list[str] = []
    due = a.send("b", 14480, lambda: got.append("x"))
    assert due == pytest.approx(15140 / 1e6)
    clock.now = due
    assert b.receive("a", 14480, lambda: got.append("in")) == due and got == ["in"]   # a shaped it
    # b's next send waits for the ACKs of those 10 segments: 5 x 66 bytes
    assert b.send("a", 1448, lambda: None) == pytest.approx(due + (330 + 1514) / 1e6)
    for shaper in (a, b):
        shaper.close()


def test_a_radio_serialises_sends_to_different_peers() -> None:
    # an owner with a radio sends 1 MB to each of two peers: the second waits for the first.
    link = LinkSpec(1e6, 0.0)
    links = {(src, dst): link for peer in ("c0", "c1") for src, dst in (("o", peer), (peer, "o"))}
    clock = FakeClock()
    owner = NodeShaper("o", links, radios={"o"}, clock=clock)
    free = NodeShaper("o", links, clock=clock)
    assert [owner.send(p, 10**6, lambda: None) for p in ("c0", "c1")] == pytest.approx([1.0, 2.0])
    assert [free.send(p, 10**6, lambda: None) for p in ("c0", "c1")] == pytest.approx([1.0, 1.0])
    # its downlink is shaped where it receives: the peers send at once, the owner queues them
    peer = NodeShaper("c0", links, radios={"o"}, clock=clock)
    assert peer.send("o", 10**6, lambda: None) == 0.0
    assert [owner.receive(p, 10**6, lambda: None) for p in ("c0", "c1")] == pytest.approx([1.0, 2.0])
    for shaper in (owner, free, peer):
        shaper.drain(0.0)
        shaper.close()


def test_acks_sent_while_a_message_is_on_the_link_make_it_due_later() -> None:
    # a sends 10 B at 1 B/s (due 10); at 2 it receives 4 B from b (shaped by b), whose ACKs
    # (2 s at one 1-byte ACK per 2 bytes) go between the segments of its message: due 12
    acking = LinkSpec(1.0, 0.0, Framing(mss=1, header=0, ack=1, per_ack=2))
    clock = FakeClock()
    a = NodeShaper("a", {("a", "b"): acking, ("b", "a"): acking}, clock=clock)
    assert a.send("b", 10, lambda: None) == 10.0
    clock.now = 2.0
    a.receive("b", 4, lambda: None)
    assert a.send("b", 1, lambda: None) == pytest.approx(13.0)   # behind the pushed one
    a.close()


def test_a_pushed_message_is_delivered_at_its_new_due_time() -> None:
    # real clock: 0.2 s of data, then 0.2 s of ACKs made at once; never delivered before 0.4 s
    acking = LinkSpec(1e6, 0.0, Framing(mss=1, header=0, ack=1, per_ack=2))
    a = NodeShaper("a", {("a", "b"): acking, ("b", "a"): acking})
    done = threading.Event()
    delivered: list[float] = []
    start = time.monotonic()
    a.send("b", 200_000, lambda: (delivered.append(time.monotonic() - start), done.set()))
    a.receive("b", 400_000, lambda: None)
    assert done.wait(timeout=30)
    assert delivered[0] >= 0.4
    a.close()
