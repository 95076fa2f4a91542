"""What a node process needs, declared once: the CLI's `node` flags and the launcher's JSON both come from here."""

from __future__ import annotations

from typing import Annotated, Literal, get_args

from pydantic import Field, model_validator

from splitpipe.config import RunConfig
from splitpipe.options import MAX_COUNT, Count, Options, Seconds

__all__ = ["ROLES", "Role", "ClusterOptions", "LaunchOptions", "NodeOptions"]

Role = Literal["server", "device", "compute", "aggregator", "central", "worker"]
#: Roles a node may play (`splitpipe node --role`); the plan's topology says which exist.
ROLES: tuple[str, ...] = get_args(Role)


class ClusterOptions(Options):
    """How the node processes of a distributed run behave: `splitpipe launch` and `splitpipe node` share them."""

    timeout: Seconds = 600.0
    """seconds any phase may wait (nodes joining, a message, a report) before the run fails"""
    threads: Count | None = None
    """torch CPU threads per node (default: launch: CPUs / nodes; node: torch's choice)"""
    silence: Seconds = 10.0
    """seconds without a word (heartbeats come every second) before a node counts as gone; a dead process
    is noticed at once by its broken streams, this catches a stalled one or a cut network"""
    emulate_speed: bool = False
    """stretch each compute action to measured / speed, with the node's speed from the config (a local
    cluster standing in for slower devices)"""
    resume: str | None = None
    """continue the run whose out folder this is from its last complete checkpoint (launch: its config,
    --epochs may raise the total; node: the coordinator's flag, the others get their state from it)"""


class LaunchOptions(ClusterOptions):
    """A whole cluster on this machine (`splitpipe launch`)."""

    processes: Annotated[int, Field(ge=2, le=MAX_COUNT)] | None = None
    """node processes in all (default: one per node, at most 16 unless --fail is given): the coordinator runs
    alone, the other nodes share the rest, each in a thread with its own key and streams (saves memory: one
    torch and one data set per process)"""


class NodeOptions(ClusterOptions):
    """One node of a distributed run: who it is, where it listens, whom it trusts, and the run's config."""

    role: Role
    """what this node is in the plan"""
    id: Annotated[int, Field(ge=0, le=MAX_COUNT)] = 0
    """which node of its role: 2 for device2"""
    listen: str | None = None
    """HOST:PORT to listen on; port 0 picks a free one (default: devices and data owners listen nowhere and
    dial their peers, every other node listens on 0.0.0.0:50051)"""
    advertise: str | None = None
    """HOST where the other nodes reach this one (default: the listen host, or this machine's name when
    listening on all interfaces)"""
    coordinator: str | None = None
    """HOST:PORT of the coordinating node (every other node needs it)"""
    keys: str | None = None
    """folder of `splitpipe keys`: this node's NODE.key and every node's public.json (per-node identity: each
    stream signed by its sender; no shared secret)"""
    secret_file: str | None = None
    """file holding the shared secret, when no --keys are given (default: $SPLITPIPE_SECRET)"""
    tls_cert: str | None = None
    """this node's certificate (PEM), for mutual TLS"""
    tls_key: str | None = None
    """this node's private key (PEM)"""
    tls_ca: str | None = None
    """the CA certificate that signed every node's certificate (PEM)"""
    port_file: str | None = None
    """write the port listened on to this file once listening"""
    config: RunConfig
    """the run, the same on every node (out and progress may differ)"""

    @model_validator(mode="after")
    def _tls_whole(self) -> NodeOptions:
        files = (self.tls_cert, self.tls_key, self.tls_ca)
        if any(files) and not all(files):
            raise ValueError("mutual TLS needs all of --tls-cert, --tls-key and --tls-ca")
        if self.keys and self.secret_file:
            raise ValueError("give --keys (per-node identity) or --secret-file (a shared secret), not both")
        return self
