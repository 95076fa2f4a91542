"""A dial-out node's pull connection that breaks is dialled again (transport/redial.py)."""

from __future__ import annotations

import socket
import threading

from splitpipe.runtime.transport import SocketTransport, TransportError
from splitpipe.runtime.transport.redial import redial

from .conftest import SECRET


def test_a_broken_pull_connection_is_dialled_again_and_messages_flow(rx, wait_for) -> None:
    with SocketTransport("phone", None, {"rx": rx.address}, SECRET, connect_timeout=5.0) as phone:
        phone.start()
        assert wait_for(lambda: rx.open_connections().get("phone") == 1)   # its pull connection
        rx.send_control("phone", {"n": 0})
        assert phone.receive(10.0).control == {"n": 0}
        channel = rx._channels["phone"]
        assert channel._connection is not None
        channel._connection.release()   # rx's end of the pull connection closes: phone reads an end without bye
        got = []
        for n in range(1, 400):   # the first sends after the break fail (and one raises); then it flows again
            try:
                rx.send_control("phone", {"n": n})
            except TransportError:
                pass
            message = phone.receive(0.05)
            if message is not None:
                got.append(message.control)
                if message.control.get("n", 0) >= 1:
                    break
        assert got and got[-1]["n"] >= 1, got
        assert {"type": "broken"} not in got   # phone's mailbox is not told rx died
        assert wait_for(lambda: rx.open_connections().get("phone") == 1)   # the old one is let go


def test_a_pull_connection_whose_peer_is_gone_is_reported_broken(wait_for) -> None:
    rx = SocketTransport("rx", "127.0.0.1:0", {}, SECRET, connect_timeout=5.0)
    rx.start()
    with SocketTransport("phone", None, {"rx": rx.address}, SECRET, connect_timeout=0.5) as phone:
        phone.start()
        assert wait_for(lambda: rx.open_connections().get("phone") == 1)   # its pull connection
        rx.send_control("phone", {"n": 0})
        assert phone.receive(10.0).control == {"n": 0}
        rx._stopping.set()   # rx "dies": its listener and connections go, no bye
        assert rx._listener.sock is not None
        rx._listener.sock.shutdown(socket.SHUT_RDWR)   # wakes its accept loop, which then ends
        rx._listener.sock.close()
        for connection in list(rx._connections):
            connection.release()
        message = phone.receive(30.0)
        assert message is not None and (message.src, message.control) == ("rx", {"type": "broken"})
    rx.close()


def test_redial_backs_off_until_a_dial_succeeds_or_time_is_up() -> None:
    tries: list[float] = []

    def dial(left: float) -> str:
        tries.append(left)
        if len(tries) < 3:
            raise TransportError("refused")
        return "connection"

    assert redial(dial, 30.0, threading.Event()) == ("connection", "")
    assert len(tries) == 3
    stopping = threading.Event()
    stopping.set()
    assert redial(dial, 30.0, stopping) == (None, "no time left to dial")

    def never(left: float) -> str:
        raise TransportError("refused")

    assert redial(never, 0.3, threading.Event()) == (None, "refused")
