"""The schedule IR: immutable actions that state their data flow, with a text form that round-trips.

A node runs one or more *lanes* (programs). Lanes of one node share its processor: when
it is free it runs the ready action whose input arrived first. `Send` never blocks; `Recv`
waits for the message with the same tag. A compute action names the tensors it `reads` and
`writes`; builders write compute only and `messages.add_messages` adds the Sends and Recvs.

How long a tensor lives in its node's store: act, grad, label and backup are consumed by the
one action that reads them (a Send or a compute action); weights are consumed by their only
compute reader and kept while several read them; avg is kept until the epoch ends; a backup
(a stage's weights sent to another node as its recovery copy) is kept by its receiver for
the rest of the run, outside the store (the executor's `backups`); a move (layers and their
optimizer state going to their new stage when a plan changes) lives only on its link.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields

__all__ = [
    "Tag", "Action", "Replica", "Schedule", "AGG_LANE",
    "FORWARD", "BACKWARD", "STEP", "SEND", "RECV", "SNAPSHOT", "AGGREGATE", "LOAD",
    "parse_action", "TRANSIENT_KINDS", "NO_OWNER", "programs_from_lists", "STASH_WEIGHTS",
]

FORWARD, BACKWARD, STEP = "F", "B", "U"
SEND, RECV = "S", "R"
SNAPSHOT, AGGREGATE, LOAD = "W", "A", "L"
COMPUTE_OPS = frozenset({FORWARD, BACKWARD, STEP, SNAPSHOT, AGGREGATE, LOAD})
ALL_OPS = COMPUTE_OPS | {SEND, RECV}

#: Lane of a node's aggregation program (FedAvg, relaying weights).
AGG_LANE = -1
#: Owner of a tensor that belongs to no one data owner (an average over owners).
NO_OWNER = -1

#: Plan.extra key: every forward keeps the weights it used for its own backward, whose gradient
#: then applies to the weights of that time (weight stashing, for asynchronous pipelines).
STASH_WEIGHTS = "stash_weights"

#: Message kinds consumed once (activations, gradients, labels); weights may be read often.
TRANSIENT_KINDS = frozenset({"act", "grad", "label", "backup", "move"})
MESSAGE_KINDS = TRANSIENT_KINDS | {"weights", "avg"}
#: `data` is an owner's micro-batch (read where the owner's shard lives, never sent);
#: `loss` is a last part's loss, kept with the autograd state for its Backward.
KINDS = MESSAGE_KINDS | {"data", "loss"}


@dataclass(frozen=True, order=True)
class Tag:
    """Names a message or a stored tensor: `act` of `part`'s output, `grad` of `part`'s input.

    `owner` is the data owner whose batch (or replica) the tensor belongs to, NO_OWNER for
    an average.
    """

    kind: str
    owner: int = 0
    part: int = 0
    step: int = 0
    mb: int = 0

    def __str__(self) -> str:
        return f"{self.kind}/{self.owner}/{self.part}/{self.step}/{self.mb}"

    @classmethod
    def parse(cls, text: str) -> Tag:
        kind, *nums = text.split("/")
        if kind not in KINDS or len(nums) != 4:
            raise ValueError(f"bad tag '{text}': want KIND/OWNER/PART/STEP/MB with KIND in {sorted(KINDS)}")
        return cls(kind, *(int(n) for n in nums))


@dataclass(frozen=True)
class Action:
    """One step of a lane's program.

    `owner` is the data owner whose batch this is; `replica` is which copy of `part` runs it
    (one per owner in SFL, a single shared one in SL). `samples` is the micro-batch size
    of a Forward, Backward or a Send/Recv of its tensors (what a predictor needs).

    A compute action names its data flow: `reads` and `writes` are tags in its node's store.
    Forward of a first part reads `data` (the owner's micro-batch) and writes its `act` (and
    the `label`s when another part computes the loss); of a later part it reads the `act`;
    of a last part it also reads the labels and writes the `loss`. Backward reads the
    incoming `grad` (none for a last part) and writes the outgoing one (none for a first
    part). Snapshot writes `weights`; Load reads them or an `avg`. Aggregate reads its
    sources and writes one `avg` of the written tag's part: each state key of that part is
    the average, with `weights`, over the sources that hold it (weights renormalised over
    them). A Send or Recv carries one `tag` to or from `peer`.
    """

    op: str
    part: int = 0
    owner: int = 0
    replica: int = 0
    step: int = 0
    mb: int = 0
    samples: int = 0
    peer: str = ""
    tag: Tag | None = None
    reads: tuple[Tag, ...] = ()
    writes: tuple[Tag, ...] = ()
    weights: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        if self.op not in ALL_OPS:
            raise ValueError(f"unknown action op '{self.op}'; ops are {sorted(ALL_OPS)}")

    @property
    def is_compute(self) -> bool:
        return self.op in COMPUTE_OPS

    @property
    def label(self) -> str:
        """Short form for timelines: F1.2 = forward of part 1, micro-batch 2."""
        if self.op in (FORWARD, BACKWARD):
            return f"{self.op}{self.part}.{self.mb}"
        if self.op in (SEND, RECV) and self.tag is not None:
            return f"{self.tag.kind[0]}{self.tag.part}.{self.tag.mb}"
        return f"{self.op}{self.part}"

    def __str__(self) -> str:
        out = [self.op]
        for f in fields(self)[1:]:
            value = getattr(self, f.name)
            if value == f.default:
                continue
            if f.name in ("reads", "writes"):
                value = ",".join(str(t) for t in value)
            elif f.name == "weights":
                value = ",".join(repr(w) for w in value)
            out.append(f"{f.name}={value}")
        return " ".join(out)


def parse_action(text: str) -> Action:
    """Inverse of str(Action)."""
    op, *pairs = text.split()
    kwargs: dict[str, object] = {}
    for pair in pairs:
        key, _, value = pair.partition("=")
        if key in ("part", "owner", "replica", "step", "mb", "samples"):
            kwargs[key] = int(value)
        elif key == "peer":
            kwargs[key] = value
        elif key == "tag":
            kwargs[key] = Tag.parse(value)
        elif key in ("reads", "writes"):
            kwargs[key] = tuple(Tag.parse(t) for t in value.split(","))
        elif key == "weights":
            kwargs[key] = tuple(float(w) for w in value.split(","))
        else:
            raise ValueError(f"bad action field '{pair}' in '{text}'")
    return Action(op, **kwargs)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Replica:
    """One copy of a part on a node."""

    node: str
    part: int
    replica: int


@dataclass(frozen=True)
class Schedule:
    """Per-node, per-lane programs for one epoch, plus where the parts live.

    `evaluate[part]` lists (replica, weight) pairs whose weighted average is the global
    model's part, used for test accuracy. `owners[i]` is the node that holds data owner
    i's training shard (shard i).
    """

    programs: Mapping[str, Mapping[int, tuple[Action, ...]]]
    replicas: tuple[Replica, ...]
    evaluate: Mapping[int, tuple[tuple[Replica, float], ...]]
    owners: Mapping[int, str] = field(default_factory=dict)

    def actions(self) -> Iterable[tuple[str, int, Action]]:
        for node, lanes in self.programs.items():
            for lane, program in lanes.items():
                for action in program:
                    yield node, lane, action

    def dump(self) -> str:
        """Text form: one `node lane: action` line per action, for golden files and diffs."""
        return "\n".join(f"{node} {lane}: {action}" for node, lane, action in self.actions()) + "\n"


Programs = dict[str, dict[int, tuple[Action, ...]]]


def programs_from_lists(lists: Mapping[tuple[str, int], list[Action]]) -> Programs:
    """{(node, lane): actions} -> {node: {lane: actions}}, keeping the order of first appearance."""
    programs: Programs = {}
    for (node, lane), actions in lists.items():
        programs.setdefault(node, {})[lane] = tuple(actions)
    return programs
