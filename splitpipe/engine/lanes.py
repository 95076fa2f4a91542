"""Lanes: one model of a node's programs sharing its processor, for the emulator and the runtime alike.

A node runs one or more lanes. Which of them may run now is decided by one rule, the same on
the virtual clock (engine/events.py) and on a real node (runtime/node.py):

  (1) a Send, and a Recv whose message is in, take no processor time: they run at once,
      earliest-ready first (a Recv is ready when both its lane and its message are)
  (2) among compute actions, the lane that became ready first runs; ties go to lane order
  (3) a replica that several lanes train is held by a lane from its first Forward or Backward
      on it to its Step (or the lane's end): the other lanes' compute on it waits (no mixed gradients, and each
      batch sees the weights of the one before: SplitFed v2's shared server part)

Every compute action and every transfer leaves a Span; the helpers here make them, so both
engines draw the same timeline.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from splitpipe.schedules.ir import AGGREGATE, BACKWARD, FORWARD, LOAD, RECV, SNAPSHOT, STEP, Action, Tag
from splitpipe.span import Span

__all__ = [
    "Lane", "make_lanes", "Arrival", "next_transfer", "earliest_compute",
    "NODE_CATEGORY", "LINK_CATEGORY", "compute_span", "transfer_span",
]

#: Timeline category of a compute action, by op.
NODE_CATEGORY = {FORWARD: "forward", BACKWARD: "backward", STEP: "step",
                 SNAPSHOT: "aggregate", AGGREGATE: "aggregate", LOAD: "aggregate"}
#: Timeline category of a transfer, by the message's kind.
LINK_CATEGORY = {"act": "upload", "label": "upload", "grad": "download",
                 "weights": "aggregate", "avg": "aggregate", "backup": "aggregate",
                 "move": "aggregate"}


@dataclass
class Lane:
    """One program of `node` and where it stands: the next action is program[pc].

    `order` breaks ties between lanes that became ready at the same time; `ready` is when
    the lane's last action ended (the lane cannot start its next one sooner).
    """

    node: str
    lane: int
    program: tuple[Action, ...]
    order: int
    pc: int = 0
    ready: float = 0.0
    holding: set[tuple[int, int]] = field(default_factory=set)
    """(part, replica) this lane is training between a Forward or Backward and its Step (rule 3)."""

    @property
    def action(self) -> Action | None:
        return self.program[self.pc] if self.pc < len(self.program) else None

    def advance(self, ready: float) -> None:
        """The current action is done; the lane is ready again at `ready`."""
        done = self.program[self.pc]
        if done.op in (FORWARD, BACKWARD):
            self.holding.add((done.part, done.replica))
        elif done.op == STEP:
            self.holding.discard((done.part, done.replica))
        self.ready = ready
        self.pc += 1
        if self.pc == len(self.program):
            self.holding.clear()


def make_lanes(programs: Mapping[str, Mapping[int, tuple[Action, ...]]], ready: float = 0.0) -> list[Lane]:
    """A lane per (node, lane) program, in the order `programs` lists them, all ready at `ready`."""
    pairs = ((node, lane, prog) for node, lanes in programs.items() for lane, prog in lanes.items())
    return [Lane(node, lane, program, order, ready=ready) for order, (node, lane, program) in enumerate(pairs)]


#: When the message a lane's Recv waits for arrived; None while it has not.
Arrival = Callable[[Lane], float | None]


def next_transfer(lanes: Iterable[Lane], arrival: Arrival) -> tuple[float, Lane] | None:
    """The Send or Recv to run first by rule (1) and when its lane is ready; None if none may run."""
    best: tuple[float, int, Lane] | None = None
    for ln in lanes:
        action = ln.action
        if action is None or action.is_compute:
            continue
        ready = ln.ready
        if action.op == RECV:
            arrived = arrival(ln)
            if arrived is None:
                continue
            ready = max(ready, arrived)
        if best is None or (ready, ln.order) < best[:2]:
            best = (ready, ln.order, ln)
    return None if best is None else (best[0], best[2])


def earliest_compute(lanes: Iterable[Lane]) -> Lane | None:
    """The lane whose compute action runs next under rules (2) and (3); None if no lane may compute."""
    lanes = list(lanes)
    computing = [ln for ln in lanes if ln.action is not None and ln.action.is_compute]
    held = {(r, ln.lane) for ln in lanes for r in ln.holding}
    if held:
        computing = [ln for ln in computing if not _held_by_another(ln, held)]
    return min(computing, key=lambda ln: (ln.ready, ln.order), default=None)


def _held_by_another(lane: Lane, held: set[tuple[tuple[int, int], int]]) -> bool:
    action = lane.action
    assert action is not None
    if action.op not in (FORWARD, BACKWARD, STEP):
        return False
    key = (action.part, action.replica)
    return any(replica == key and holder != lane.lane for replica, holder in held)


def compute_span(node: str, action: Action, start: float, end: float, epoch: int) -> Span:
    """The span of compute `action` on `node`'s processor."""
    return Span(node, NODE_CATEGORY[action.op], start, end, epoch, action.owner,
                action.part, action.step, action.mb, 0, action.label)


def transfer_span(src: str, dst: str, tag: Tag, start: float, end: float, epoch: int,
                  nbytes: int, label: str) -> Span:
    """The span of message `tag` (`nbytes` of tensor data) busy on the link src -> dst."""
    return Span(f"{src}->{dst}", LINK_CATEGORY[tag.kind], start, end, epoch,
                tag.owner, tag.part, tag.step, tag.mb, nbytes, label)
