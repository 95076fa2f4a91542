"""A real node that died and is started again with the same name rejoins at the next epoch boundary.

The cluster runs in threads over gRPC on loopback; device1's "process" dies when its transport
closes after epoch 0, and a new device1 (a new transport on another port) says hello again.
"""

from __future__ import annotations

import threading
from typing import Any, cast

from splitpipe.runtime.coordinator import Coordinator
from splitpipe.runtime.member import run_member
from splitpipe.runtime.transport import GrpcTransport, Transport

from .test_equality import grpc_transports, small_setup


def test_a_restarted_device_rejoins_and_trains_again(tiny_npz: str) -> None:
    setup = small_setup("pipelearn", tiny_npz, epochs=5)
    transports = grpc_transports(setup)
    said_hello = threading.Event()

    def member(name: str, transport: Transport) -> None:
        try:
            run_member(setup, name, transport, "server", transport.address, timeout=30)
        except Exception:  # noqa: BLE001 - the first device1 dies with its transport
            pass

    class Restarted(GrpcTransport):
        def send_control(self, peer: str, body: dict) -> None:
            super().send_control(peer, body)
            if body["type"] == "hello":
                said_hello.set()

    def kill_and_restart(epoch: int, row: dict[str, object]) -> None:
        if epoch == 0:
            transports["device1"].close()  # (1) device1's process dies
            again = Restarted("device1", "127.0.0.1:0", {"server": transports["server"].address},
                              b"equality-test-secret", links={d: s for (a, d), s in setup.topology.links.items()
                                                              if a == "device1"})
            again.start()
            transports["device1 again"] = again
            threading.Thread(target=member, args=("device1", again), daemon=True).start()  # (2) started again
            assert said_hello.wait(30)

    for name in ("device0", "device1"):
        threading.Thread(target=member, args=(name, transports[name]), daemon=True).start()
    try:
        result = Coordinator(setup, "server", transports["server"], address=transports["server"].address,
                             timeout=30, silence_s=10, progress=kill_and_restart).run()
    finally:
        for transport in transports.values():
            transport.close()
    events = cast(list[dict[str, Any]], result.report["events"])
    assert [(e["event"], e["nodes"], e["epoch"]) for e in events][0] == ("failure", ["device1"], 1)
    back = next(e for e in events if e["event"] == "rejoin")
    assert (back["event"], back["nodes"]) == ("rejoin", ["device1"]) and back["epoch"] in (2, 3)
    rows = cast(list[dict[str, Any]], result.report["epochs"])
    assert [r["participants"] for r in rows[back["epoch"]:]] == [["device0", "device1"]] * (5 - back["epoch"])
    assert rows[1]["participants"] == ["device0"] and rows[-1]["test_accuracy"] >= 0.8
