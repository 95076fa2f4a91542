"""Where a node is reached: the host it advertises, and a probe that says at once when that is wrong.

A node listening on all interfaces does not know which of its addresses the others can reach;
`socket.getfqdn()` often answers `localhost`, which every other machine takes for itself. So
it advertises the address of the interface its route to the coordinator leaves from (the one
the coordinator sees it on), or asks for --advertise. The coordinator probes each address as
the node joins, so a wrong one is named with its address before any work is assigned.
"""

from __future__ import annotations

import ipaddress
import socket

__all__ = ["advertised_host", "probe", "CONNECT_S"]

#: Most seconds a node waits to connect to a peer (less when --timeout is shorter).
CONNECT_S = 10.0
_WILDCARD = ("0.0.0.0", "[::]", "::", "")


def _is_loopback(host: str) -> bool:
    try:
        infos = socket.getaddrinfo(host.strip("[]"), None, type=socket.SOCK_STREAM)
    except OSError:
        return False
    return bool(infos) and all(ipaddress.ip_address(str(info[4][0]).split("%")[0]).is_loopback for info in infos)


def advertised_host(listen: str, advertise: str | None, coordinator: str | None) -> str:
    """The host other nodes reach this one at; ValueError (naming --advertise) when there is no good answer.

    `coordinator` is the coordinator's HOST:PORT (None on the coordinator, whose address every
    node already has from its own --coordinator).
    """
    host = advertise or listen.rpartition(":")[0]
    if coordinator is None:
        return host
    target = coordinator.rpartition(":")[0].strip("[]")
    if host in _WILDCARD and not advertise:
        host = _route_source(target, int(coordinator.rpartition(":")[2]))
    if _is_loopback(host) and not _is_loopback(target):
        flag = "--advertise" if advertise else "--listen"
        raise ValueError(f"{flag} {host} is a loopback address, but the coordinator at {coordinator} is on "
                         "another machine and could not reach this node there; pass --advertise HOST "
                         "(an address of this machine the others can reach)")
    return host


def _route_source(host: str, port: int) -> str:
    """This machine's address on the route to (host, port): a UDP connect sends nothing, it only picks a route."""
    try:
        family, _, _, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)[0]
        with socket.socket(family, socket.SOCK_DGRAM) as udp:
            udp.connect(address)
            source = str(udp.getsockname()[0])
    except OSError as exc:
        raise ValueError(f"this node listens on all interfaces and cannot tell which address the coordinator at "
                         f"{host}:{port} reaches it on ({exc.strerror or exc}); pass --advertise HOST") from None
    return f"[{source}]" if ":" in source else source


def probe(address: str, timeout: float) -> str | None:
    """None if a TCP connection to `address` (HOST:PORT) opens within `timeout` s, else why not."""
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            return None
    except (OSError, ValueError) as exc:
        return str(getattr(exc, "strerror", None) or exc) or type(exc).__name__
