"""The schedule IR: immutable actions per node and lane, with a text form that round-trips.

A node runs one or more *lanes* (programs). Lanes of one node share its processor: when
it is free it runs the ready action whose input arrived first. `Send` never blocks; `Recv`
waits for the message with the same tag.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields

__all__ = [
    "Tag", "Action", "Replica", "Schedule", "AGG_LANE",
    "FORWARD", "BACKWARD", "STEP", "SEND", "RECV", "SNAPSHOT", "AGGREGATE", "LOAD",
    "parse_action", "TRANSIENT_KINDS",
]

FORWARD, BACKWARD, STEP = "F", "B", "U"
SEND, RECV = "S", "R"
SNAPSHOT, AGGREGATE, LOAD = "W", "A", "L"
COMPUTE_OPS = frozenset({FORWARD, BACKWARD, STEP, SNAPSHOT, AGGREGATE, LOAD})
ALL_OPS = COMPUTE_OPS | {SEND, RECV}

#: Lane of a node's aggregation program (FedAvg, relaying weights).
AGG_LANE = -1

#: Message kinds consumed once (activations, gradients, labels); weights may be read often.
TRANSIENT_KINDS = frozenset({"act", "grad", "label"})
KINDS = TRANSIENT_KINDS | {"weights", "avg"}


@dataclass(frozen=True, order=True)
class Tag:
    """Names a message or a stored tensor: `act` of `part`'s output, `grad` of `part`'s input."""

    kind: str
    lane: int = 0
    part: int = 0
    step: int = 0
    mb: int = 0

    def __str__(self) -> str:
        return f"{self.kind}/{self.lane}/{self.part}/{self.step}/{self.mb}"

    @classmethod
    def parse(cls, text: str) -> Tag:
        kind, *nums = text.split("/")
        if kind not in KINDS or len(nums) != 4:
            raise ValueError(f"bad tag '{text}': want KIND/LANE/PART/STEP/MB with KIND in {sorted(KINDS)}")
        return cls(kind, *(int(n) for n in nums))


@dataclass(frozen=True)
class Action:
    """One step of a lane's program.

    `lane` is the data owner whose batch this is; `replica` is which copy of `part` runs it
    (one per owner in SFL, a single shared one in SL). `samples` is the micro-batch size
    of a Forward, Backward or a Send/Recv of its tensors (what a predictor needs). `peer` is the destination of a
    Send and the source of a Recv. Aggregate averages `sources` with `weights` into `tag`.
    """

    op: str
    part: int = 0
    lane: int = 0
    replica: int = 0
    step: int = 0
    mb: int = 0
    samples: int = 0
    peer: str = ""
    tag: Tag | None = None
    sources: tuple[Tag, ...] = ()
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
            if f.name == "sources":
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
        if key in ("part", "lane", "replica", "step", "mb", "samples"):
            kwargs[key] = int(value)
        elif key == "peer":
            kwargs[key] = value
        elif key == "tag":
            kwargs[key] = Tag.parse(value)
        elif key == "sources":
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
    model's part, used for test accuracy. `data_lanes` maps a data-owning (node, lane) to
    the index of its training shard.
    """

    programs: Mapping[str, Mapping[int, tuple[Action, ...]]]
    replicas: tuple[Replica, ...]
    evaluate: Mapping[int, tuple[tuple[Replica, float], ...]]
    data_lanes: Mapping[tuple[str, int], int] = field(default_factory=dict)

    def actions(self) -> Iterable[tuple[str, int, Action]]:
        for node, lanes in self.programs.items():
            for lane, program in lanes.items():
                for action in program:
                    yield node, lane, action

    def dump(self) -> str:
        """Text form: one `node lane: action` line per action, for golden files and diffs."""
        return "\n".join(f"{node} {lane}: {action}" for node, lane, action in self.actions()) + "\n"


def programs_from_lists(lists: Mapping[tuple[str, int], list[Action]]) -> dict[str, dict[int, tuple[Action, ...]]]:
    programs: dict[str, dict[int, tuple[Action, ...]]] = {}
    for (node, lane), actions in lists.items():
        programs.setdefault(node, {})[lane] = tuple(actions)
    return programs
