"""What a launcher hands a child process through its stdin pipe: the nodes it runs, their keys, where to say its port.

Nothing of it is written to a file, so a launcher killed by SIGKILL leaves no secret behind.
A child may run several nodes (`launch --processes`), each with its own key, transport and streams.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass

from splitpipe.runtime.options import NodeOptions

__all__ = ["Handover"]


@dataclass(frozen=True)
class Handover:
    """`nodes[i]` signs with the private key `keys[i]` (PEM); every node's public key is in `public`."""

    nodes: tuple[NodeOptions, ...]
    keys: tuple[bytes, ...]
    public: Mapping[str, str]
    port_fd: int | None = None
    """an inherited pipe the coordinator writes its port to, once listening"""
    coordinator_host: str | None = None
    """the coordinator's host; its port follows on the next line of stdin once it listens (so that a child
    imports and prepares while the coordinator starts)"""

    def to_bytes(self) -> bytes:
        """One line of JSON."""
        return json.dumps({"nodes": [n.to_json() for n in self.nodes], "keys": [k.decode() for k in self.keys],
                           "public": dict(self.public), "port_fd": self.port_fd,
                           "coordinator_host": self.coordinator_host}).encode() + b"\n"

    @classmethod
    def from_bytes(cls, data: bytes) -> Handover:
        try:
            body = json.loads(data)
            nodes = tuple(NodeOptions.from_json(json.dumps(n)) for n in body["nodes"])
            keys = tuple(str(k).encode() for k in body["keys"])
            public, port_fd = {str(k): str(v) for k, v in dict(body["public"]).items()}, body["port_fd"]
            host = body.get("coordinator_host")
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"the launcher's handover is not valid: {exc}") from None
        if len(keys) != len(nodes) or not nodes or not (port_fd is None or isinstance(port_fd, int)):
            raise ValueError(f"the launcher's handover names {len(nodes)} node(s) and {len(keys)} key(s)")
        return cls(nodes, keys, public, port_fd, None if host is None else str(host))
