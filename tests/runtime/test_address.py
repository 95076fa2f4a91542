"""Addresses that work: no loopback name for a remote coordinator, and an unreachable node named at once."""

from __future__ import annotations

import socket
import time

import pytest

from splitpipe.config import RunConfig
from splitpipe.runtime.address import advertised_host, probe
from splitpipe.runtime.coordinator import Coordinator
from splitpipe.runtime.protocol import config_body
from splitpipe.runtime.transport import GrpcTransport
from splitpipe.setup import prepare


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_all_interfaces_advertise_the_address_the_coordinator_is_reached_from() -> None:
    assert advertised_host("0.0.0.0:0", None, "127.0.0.1:50051") == "127.0.0.1"
    assert advertised_host("0.0.0.0:0", "10.0.0.7", "10.0.0.1:50051") == "10.0.0.7"
    assert advertised_host("0.0.0.0:50051", None, None) == "0.0.0.0"  # the coordinator: nobody dials what it says
    try:
        host = advertised_host("0.0.0.0:0", None, "192.0.2.1:50051")  # a remote coordinator (TEST-NET-1)
    except ValueError as exc:  # no route there from this machine
        assert "pass --advertise HOST" in str(exc)
    else:
        assert host not in ("127.0.0.1", "localhost", "0.0.0.0")


def test_a_loopback_name_for_a_remote_coordinator_is_refused() -> None:
    with pytest.raises(ValueError, match=r"--advertise localhost is a loopback address, but the coordinator at "
                                         r"192.0.2.1:50051 is on another machine"):
        advertised_host("0.0.0.0:0", "localhost", "192.0.2.1:50051")
    with pytest.raises(ValueError, match=r"--listen 127.0.0.1 is a loopback address"):
        advertised_host("127.0.0.1:0", None, "192.0.2.1:50051")


def test_probe_names_why_an_address_cannot_be_reached() -> None:
    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        assert probe(f"127.0.0.1:{listening.getsockname()[1]}", 5) is None
    assert "refused" in str(probe(f"127.0.0.1:{closed_port()}", 5)).lower()


def test_a_node_that_joins_from_an_unreachable_address_is_named_at_once(tiny_npz: str) -> None:
    setup = prepare(RunConfig(technique="sfl", dataset=f"npz:{tiny_npz}", devices=1, network="none", epochs=1,
                              batch_size=16, progress=False))
    secret, port = b"address-test", closed_port()
    with GrpcTransport("server", "127.0.0.1:0", {}, secret) as server:
        server.start()
        with GrpcTransport("device0", "127.0.0.1:0", {"server": server.address}, secret) as device:
            device.send_control("server", {"type": "hello", "name": "device0", "role": "device",
                                           "address": f"127.0.0.1:{port}", "config": config_body(setup.config)})
            started = time.monotonic()
            with pytest.raises(RuntimeError, match=rf"device0 advertises 127.0.0.1:{port}, where server cannot "
                                                   r"reach it \(Connection refused\); start device0 with --advertise"):
                Coordinator(setup, "server", server, timeout=600).run()
            assert time.monotonic() - started < 300  # at once, not at the 600 s phase timeout
