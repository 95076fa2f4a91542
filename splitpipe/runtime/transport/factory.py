"""make_transports: a started, connected set of transports, so callers name a kind, not a class."""

from __future__ import annotations

import secrets
from collections.abc import Collection, Mapping, Sequence

from splitpipe.network import LinkSpec
from splitpipe.runtime.transport.base import Transport, check_nodes
from splitpipe.runtime.transport.grpc_transport import GrpcTransport
from splitpipe.runtime.transport.local import make_local_transports
from splitpipe.runtime.transport.security import TlsConfig
from splitpipe.runtime.transport.socket_transport import SocketTransport

__all__ = ["TRANSPORT_KINDS", "make_transports"]

#: "local": in-process queues; "socket": TCP (or TLS) sockets over loopback, the runtime's wire;
#: "grpc": gRPC over loopback, one server per node.
TRANSPORT_KINDS = ("local", "socket", "grpc")


def make_transports(kind: str, names: Sequence[str], links: Mapping[tuple[str, str], LinkSpec] | None = None, *,
                    radios: Collection[str] = (), secret: bytes | None = None, tls: Mapping[str, TlsConfig] | None = None,
                    host: str | None = None, **options: float) -> dict[str, Transport]:
    """One started transport per node in `names`, each told where every other is reached.

    `links[(src, dst)]` shapes src -> dst (absent = unshaped); the links of a node in `radios`
    share its uplink and its downlink. Sockets and gRPC: nodes listen on
    `host` (default 127.0.0.1) at free ports, share `secret` (a fresh random one if None), use `tls[name]` for
    mutual TLS where given, and take their class's keyword `options` (gRPC's chunk_bytes, ...).
    """
    check_nodes(names, links)
    made: dict[str, Transport]
    if kind == "local":
        extra = [k for k, v in (("secret", secret), ("tls", tls), ("host", host), *options.items()) if v is not None]
        if extra:
            raise ValueError(f"in-process transports take no {', '.join(extra)}: those are socket and gRPC options")
        made = make_local_transports(names, links, radios)
    elif kind == "socket":
        key = secret or secrets.token_bytes(32)
        made = {name: SocketTransport(name, f"{host or '127.0.0.1'}:0", {}, key, tls=(tls or {}).get(name),
                                      links=links, radios=radios, **options)  # type: ignore[arg-type]
                for name in names}
    elif kind == "grpc":
        key = secret or secrets.token_bytes(32)
        made = {name: GrpcTransport(name, f"{host or '127.0.0.1'}:0", {}, key, tls=(tls or {}).get(name),
                                    links=links, radios=radios,
                                    **options)  # type: ignore[arg-type]
                for name in names}
    else:
        raise ValueError(f"unknown transport kind {kind!r}; kinds are {', '.join(TRANSPORT_KINDS)}")
    try:
        for transport in made.values():
            transport.start()
        for transport in made.values():
            for peer in made.values():
                transport.add_peer(peer.name, peer.address)
    except BaseException:
        for transport in made.values():
            transport.close()
        raise
    return made
