"""Heartbeats and large messages on one connection (transport/progress.py): no false "silent" verdict."""

from __future__ import annotations

import socket
import threading
import time

import torch

from splitpipe.network import LinkSpec
from splitpipe.runtime.mailbox import Mailbox
from splitpipe.runtime.transport import SocketTransport
from splitpipe.schedules.ir import Tag

from .conftest import SECRET


def test_on_a_shaped_link_a_heartbeat_overtakes_a_large_tensor(rx) -> None:
    """The sender's shaper holds the tensor until it is due; control messages are not shaped, so the
    heartbeat sent after it arrives first (the link's emulated slowness never holds the socket)."""
    links = {("tx", "rx"): LinkSpec(1e6, 0.0)}   # 1 MB/s: 1 MiB takes about a second
    with SocketTransport("tx", "127.0.0.1:0", {"rx": rx.address}, SECRET, links=links, connect_timeout=5.0) as tx:
        tx.start()
        tx.send("rx", Tag("act"), torch.zeros(1 << 18))
        tx.send_control("rx", {"type": "alive"})
        first = rx.receive(10.0)
        assert first is not None and first.control == {"type": "alive"}
        second = rx.receive(10.0)
        assert second is not None and second.tag == Tag("act")


class Throttle:
    """A TCP relay to `target` that passes on what the client sends `chunk` bytes at a time, one chunk
    per `every` seconds while `slow` is set (a slow real link), at full speed once it is cleared."""

    def __init__(self, target: str, chunk: int = 16 << 10, every: float = 0.02) -> None:
        host, _, port = target.rpartition(":")
        self.target, self.chunk, self.every = (host, int(port)), chunk, every
        self.slow = threading.Event()
        self.slow.set()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self.listener.getsockname()[1]}"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        client, _ = self.listener.accept()
        server = socket.create_connection(self.target)
        threading.Thread(target=self._pipe, args=(server, client, False), daemon=True).start()
        self._pipe(client, server, True)

    def _pipe(self, src: socket.socket, dst: socket.socket, throttled: bool) -> None:
        try:
            while data := src.recv(self.chunk if throttled else 1 << 16):
                dst.sendall(data)
                if throttled and self.slow.is_set():
                    time.sleep(self.every)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                s.close()


def test_bytes_of_a_message_still_coming_in_keep_its_sender_alive(rx) -> None:
    """A 4 MiB tensor on a real link of under 0.9 MB/s takes longer than the silence period, and the
    heartbeat queued behind it arrives only after it: the bytes arriving meanwhile count as life."""
    relay = Throttle(rx.address)
    with SocketTransport("tx", "127.0.0.1:0", {"rx": relay.address}, SECRET, connect_timeout=5.0) as tx:
        tx.start()
        box = Mailbox(rx, silence_s=1.5)
        tx.send_control("rx", {"type": "alive"})
        assert box.poll(10.0)
        box.watch("tx")
        sent = time.time()
        tx.send("rx", Tag("act"), torch.zeros(1 << 20))
        tx.send_control("rx", {"type": "alive"})
        while time.time() - sent < 2.5 * box.silence_s:   # no message in, yet no RemoteFailure
            assert not box.poll(0.1) or not box.data
        assert not box.data and (rx.heard("tx") or 0) > sent   # still coming in, and heard
        relay.slow.clear()
        deadline = time.monotonic() + 30
        while not box.data and time.monotonic() < deadline:
            box.poll(1.0)
        assert list(box.data) == [Tag("act")]
