"""Which nodes dial out: devices and data owners never listen (a phone behind NAT cannot be dialled).

A node that does not listen opens every connection itself and is reached on them (transport
socket_transport.py), so two such nodes cannot talk to each other: the plan's links must join
each of them to nodes that listen. The coordinator always listens.
"""

from __future__ import annotations

from splitpipe.plan import Plan
from splitpipe.runtime.protocol import coordinator_of

__all__ = ["DEFAULT_LISTEN", "dials_out", "check_dial_out"]

#: Where a server-side node listens when no --listen is given.
DEFAULT_LISTEN = "0.0.0.0:50051"


def dials_out(plan: Plan, name: str) -> bool:
    """Whether node `name` dials out by default: a data owner that does not coordinate."""
    return name in plan.owners and name != coordinator_of(plan)


def check_dial_out(plan: Plan, dialling: set[str]) -> None:
    """ValueError naming a link between two nodes that both dial out (neither could reach the other)."""
    for src, dst in sorted(plan.topology.links):
        if src in dialling and dst in dialling:
            raise ValueError(f"nodes {src} and {dst} exchange messages but neither listens; "
                             f"give one of them --listen HOST:PORT")
