"""The control conversation between the coordinator and the other nodes, and who is who.

One run, as control messages (data messages carry tensors, as in the emulator)::

    node                         coordinator
     |-- hello(name, address, config) -->|   (1) every node joins
     |<-- assign(peers, lanes, parts) ---|   (2) who to talk to, what to run
     |<-- ping(t0) / pong(t0,t1,t2) ---->|   (3) clock offsets, NTP style
     |<-- prepare(epoch) / ready(epoch) ->|   (4) build the segment's schedule and replicas, then
     |<-- start(epoch, at, since) -------|       all nodes start at the same instant (since:
                                                 training's first start, --speed-change's T = 0)
     |   ... the segment's data messages ...
     |-- done(spans, loss) ------------->|   (5) after an epoch's last segment: plus loss and
                                                 weights as data messages (GATHER_OWNER)

A segment is the whole epoch, or (FTPipeHD's re-partition) steps `start`..`stop` of it, named
in `prepare` and `ready`; each node marks its state as a segment starts, where (7) goes back to.
     |<-- stop --------------------------|   (6) after the last epoch

With `save` in prepare (a checkpoint follows the epoch) a node sends every replica's weights
and SGD momentum with `done`. A resumed run, or a node that rejoins, gets its replicas' state
from the coordinator instead of starting from the initial model::

     |<-- load(epoch, replicas) ---------|   (9) weights and momentum follow as data messages

A failing node sends `error`; the coordinator answers everyone with `abort`. Who may send what
is fixed (`accepts`): orders come from the coordinator only, reports go to it only, so one
node cannot order another about; an `error` from a data owner the run can lose counts as
that owner's own failure, whatever node it names (the coordinator's `blame`). When a data owner
dies and the technique can go on without it, the coordinator instead calls the epoch off::

     |<-- rewind(epoch, dead) -----------|   (7) stop; weights back to the segment's start
     |-- fence --> each peer it sends to |       nothing more of the aborted attempt follows
     |-- rewound(epoch) ---------------->|       once the fences of its senders came in
     |<-- adopt(dead, owners) -----------|   (8) re-plan without the dead, carry the weights
     |<-- prepare(epoch) ... ------------|       and the segment is run again

When the re-plan moves layers between nodes (FTPipeHD: the DP re-partitions over the
survivors), the coordinator first gathers every survivor's state (runtime/handoff.py)::

     |<-- share(epoch) ------------------|  (10) weights, momentum and recovery copies follow as
     |-- shared(replicas, backups) ----->|       data messages; after adopt, load (9) gives each
                                                 node the rebuilt state of its new replicas

Besides, between any two nodes: heartbeats (`alive`), the fences above, and liveness polls
(runtime/liveness.py): a node that waits for a peer's message too long sends it `probe(seq)`,
answered at once by the peer's transport with `probe_ack(seq)`. A member that finds a peer
lost so reports it in an `error` whose `detected` says how (liveness.DETECTIONS).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence

from splitpipe.config import RunConfig
from splitpipe.plan import Plan, Topology
from splitpipe.runtime.options import ROLES
from splitpipe.schedules.ir import Replica, Schedule, Tag
from splitpipe.span import Span

__all__ = [
    "ROLES", "GATHER_OWNER", "node_name", "node_id", "coordinator_of", "check_body",
    "config_body", "config_mismatch", "spans_to_body", "spans_from_body", "gather_tag", "replica_of",
    "assignment", "parse_address", "momentum_tag", "load_tags", "share_tags", "backups_tag", "is_state_tag", "ORDERS", "REPORTS", "accepts",
]

#: Owner in the tags of the data messages that carry a replica's weights to the coordinator (no schedule uses it).
GATHER_OWNER = -2
#: Owners of the tags of the other state messages: momentum to the coordinator, weights and momentum from it.
MOMENTUM_OWNER, LOAD_OWNER, LOAD_MOMENTUM_OWNER = -3, -4, -5
#: Owners of the tags of what a node shares after a re-plan (10): weights, momentum, its recovery copies.
SHARE_OWNER, SHARE_MOMENTUM_OWNER, SHARE_BACKUP_OWNER = -6, -7, -8
#: Config keys that may differ between nodes: they do not change what is trained.
LOCAL_KEYS = frozenset({"out", "tensorboard", "progress", "profile", "checkpoint_every", "keep_checkpoints"})

#: type -> keys each control body must have.
BODIES: dict[str, tuple[str, ...]] = {
    "hello": ("name", "role", "address", "config"),
    "assign": ("peers", "lanes", "parts", "shards", "seed", "epochs"),
    "ping": ("seq", "t0"),
    "pong": ("seq", "t0", "t1", "t2"),
    "prepare": ("epoch",),
    "ready": ("epoch",),
    "start": ("epoch", "at"),
    "done": ("epoch", "spans", "loss_sum", "loss_count", "sent"),
    "error": ("node", "message"),
    "abort": ("node", "message"),
    "stop": (),
    "alive": (),
    "rewind": ("epoch", "dead"),
    "fence": (),
    "broken": (),
    "rewound": ("epoch",),
    "adopt": ("dead", "owners"),
    "load": ("epoch", "replicas"),
    "share": ("epoch",),
    "shared": ("epoch", "replicas", "backups"),
    "probe": ("seq",),
    "probe_ack": ("seq",),
}


#: Control messages only the coordinator sends.
ORDERS = frozenset({"assign", "ping", "prepare", "start", "stop", "abort", "rewind", "adopt", "load", "share"})
#: Control messages only the coordinator receives (from the other nodes).
REPORTS = frozenset({"hello", "pong", "ready", "done", "error", "rewound", "shared"})


def accepts(kind: str, src: str, receiver: str, coordinator: str) -> bool:
    """Whether `receiver` takes a `kind` control message from `src`: orders from the coordinator, reports to it."""
    if kind in ORDERS:
        return src == coordinator and receiver != coordinator
    if kind in REPORTS:
        return receiver == coordinator and src != coordinator
    return True  # heartbeats, fences, broken-stream notices: about the sender itself


def node_name(topology: Topology, role: str, index: int) -> str:
    """The node of `role` with id `index`: "device2" for (device, 2), "server" for (server, 0)."""
    if role not in ROLES:
        raise ValueError(f"unknown role '{role}'; roles are: {', '.join(ROLES)}")
    ids = {node_id(n.name, role): n.name for n in topology.nodes if n.role == role}
    if index not in ids:
        have = f"ids {', '.join(str(i) for i in sorted(ids))}" if ids else "none of that role"
        raise ValueError(f"--id {index} out of range: the plan's {role} nodes have {have}")
    return ids[index]


def node_id(name: str, role: str) -> int:
    """The id of node `name` among its role: the number after the role ("worker3" -> 3), else 0."""
    suffix = name[len(role):] if name.startswith(role) else ""
    return int(suffix) if suffix.isdigit() else 0


def coordinator_of(plan: Plan) -> str:
    """The node that coordinates: the plan's server (SFL's server, MP-SL's aggregator, FTPipeHD's central node)."""
    plan.topology.node(plan.server)  # names the nodes if it is missing
    return plan.server


def check_body(body: Mapping[str, object], src: str) -> str:
    """The body's type, after checking it has that type's keys; RuntimeError names what is missing."""
    kind = body.get("type")
    if kind not in BODIES:
        raise RuntimeError(f"node {src} sent a control message of unknown type {str(kind)[:40]!r}")
    missing = [key for key in BODIES[kind] if key not in body]  # type: ignore[index]
    if missing:
        raise RuntimeError(f"node {src} sent '{kind}' without {', '.join(missing)}")
    return kind  # type: ignore[return-value]


def config_body(config: RunConfig) -> dict[str, object]:
    """The config as JSON (the declaration's own form), to check that every node trains the same thing."""
    return config.to_json()


def config_mismatch(mine: RunConfig, theirs: Mapping[str, object]) -> list[str]:
    """The keys (besides LOCAL_KEYS) whose values differ, as 'key: mine != theirs'."""
    own = config_body(mine)
    keys = sorted((set(own) | set(theirs)) - LOCAL_KEYS)
    return [f"{k}: {own.get(k)!r} != {theirs.get(k)!r}" for k in keys if own.get(k) != theirs.get(k)]


def assignment(schedule: Schedule, node: str, peers: Mapping[str, str], seed: int, epochs: int) -> dict[str, object]:
    """What `node` runs in `schedule`: its lanes, parts and data shards, and where its peers listen."""
    return {
        "type": "assign",
        "peers": {name: address for name, address in peers.items() if name != node},
        "lanes": sorted(schedule.programs.get(node, {})),
        "parts": sorted({r.part for r in schedule.replicas if r.node == node}),
        "shards": sorted(owner for owner, holder in schedule.owners.items() if holder == node),
        "seed": seed,
        "epochs": epochs,
    }


SPAN_FIELDS = ("resource", "category", "start", "end", "epoch", "owner", "part", "step", "micro_batch", "bytes", "label")


def spans_to_body(spans: Iterable[Span]) -> list[list[object]]:
    return [[getattr(s, f) for f in SPAN_FIELDS] for s in spans]


def spans_from_body(rows: Sequence[Sequence[object]], src: str, shift: float = 0.0) -> list[Span]:
    """Spans from a `done` body, moved by `shift` seconds (onto the coordinator's epoch clock)."""
    spans = []
    for row in rows:
        if not isinstance(row, (list, tuple)) or len(row) != len(SPAN_FIELDS):
            raise RuntimeError(f"node {src} sent a span that is not a list of {len(SPAN_FIELDS)} fields")
        span = Span(*row)  # type: ignore[arg-type]
        spans.append(dataclasses.replace(span, start=span.start + shift, end=span.end + shift))
    return spans


def gather_tag(replica: Replica, epoch: int) -> Tag:
    """The tag of the data message that carries `replica`'s weights after `epoch`."""
    return Tag("weights", GATHER_OWNER, replica.part, replica.replica, epoch)


def momentum_tag(replica: Replica, epoch: int) -> Tag:
    """The tag of the data message that carries `replica`'s SGD momentum after `epoch` (for a checkpoint)."""
    return Tag("weights", MOMENTUM_OWNER, replica.part, replica.replica, epoch)


def load_tags(replica: Replica, epoch: int) -> tuple[Tag, Tag]:
    """The tags of the weights and the momentum the coordinator sends `replica`'s node before `epoch` (9)."""
    return (Tag("weights", LOAD_OWNER, replica.part, replica.replica, epoch),
            Tag("weights", LOAD_MOMENTUM_OWNER, replica.part, replica.replica, epoch))


def share_tags(replica: Replica, epoch: int) -> tuple[Tag, Tag]:
    """The tags of the weights and the momentum of `replica` its node shares before `epoch` is redone (10)."""
    return (Tag("weights", SHARE_OWNER, replica.part, replica.replica, epoch),
            Tag("weights", SHARE_MOMENTUM_OWNER, replica.part, replica.replica, epoch))


def backups_tag(node: int, epoch: int) -> Tag:
    """The tag of the recovery copies node number `node` (its index in the run's topology) shares
    before `epoch` is redone (10): each node's its own, as data messages are filed by tag."""
    return Tag("weights", SHARE_BACKUP_OWNER, node, 0, epoch)


def is_state_tag(tag: Tag) -> bool:
    """Whether a data message carries a replica's state between a node and the coordinator (no schedule's)."""
    return tag.owner <= GATHER_OWNER


def replica_of(tag: Tag, src: str) -> Replica:
    return Replica(src, tag.part, tag.step)


def parse_address(text: str, what: str) -> tuple[str, int]:
    """HOST:PORT -> (host, port); ValueError names the flag and the value."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{what} '{text}' must be HOST:PORT with a port in 0..65535, e.g. 127.0.0.1:50051")
    return host, int(port)
