"""Layers moving to their new node when a plan changes, as real transfers on the event engine.

For each `Move` (schedules/record.py) the old holder sends the moved units' weights and SGD
momentum, hop by hop along its path; every move has a lane of its own on each node it
crosses, so moves share only the links::

    worker1 lane 0: S(move 0 -> worker2)
    worker2 lane 0: R(move 0 <- worker1)   lane 1: S(move 1 -> worker1)
    worker1 lane 1: R(move 1 <- worker2)

The spans (time 0 = the plan change) go on the run's clock; engine/carry.py then builds the
new replicas from the same state.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from splitpipe.engine.carry import momentum_of
from splitpipe.engine.emulate import TensorExecutor, payload_bytes
from splitpipe.engine.events import run_schedule
from splitpipe.plan import Topology
from splitpipe.schedules.ir import RECV, SEND, Action, Replica, Schedule, Tag, programs_from_lists
from splitpipe.schedules.record import Move
from splitpipe.span import Span

__all__ = ["run_moves", "moved_state"]


def moved_state(executor: TensorExecutor, move: Move) -> dict[str, torch.Tensor]:
    """The moved units' weights ("3.weight") and momentum ("momentum.3.weight") on the old holder."""
    module, optimizer = executor.replicas[Replica(move.path[0], move.part, move.replica)]
    units = {str(u) for u in move.units}
    state = {k: v.detach().clone() for k, v in module.state_dict().items() if k.split(".")[0] in units}
    state.update({f"momentum.{k}": v.clone() for k, v in momentum_of(module, optimizer).items()
                  if k.split(".")[0] in units})
    return state


class _Carrier:
    """The Executor of a move: payloads only, no compute."""

    def __init__(self, held: dict[tuple[str, Tag], object]) -> None:
        self.held = held

    def compute(self, node: str, action: Action) -> float:
        raise RuntimeError(f"a move has no compute, got {action} on {node}")

    def send(self, node: str, action: Action) -> tuple[object, int]:
        payload = self.held.pop((node, action.tag))  # type: ignore[arg-type]
        return payload, payload_bytes(payload)

    def receive(self, node: str, action: Action, payload: object) -> None:
        self.held[node, action.tag] = payload  # type: ignore[index]


def run_moves(moves: Sequence[Move], topology: Topology, executor: TensorExecutor) -> tuple[list[Span], dict[str, object]]:
    """Run `moves` over `topology`'s links; the spans and, per destination node, what arrived."""
    lists: dict[tuple[str, int], list[Action]] = {}
    held: dict[tuple[str, Tag], object] = {}
    for lane, move in enumerate(moves):
        tag = Tag("move", 0, move.part, lane, 0)
        held[move.path[0], tag] = moved_state(executor, move)
        for a, b in zip(move.path, move.path[1:]):
            lists.setdefault((a, lane), []).append(Action(SEND, part=move.part, peer=b, tag=tag))
            lists.setdefault((b, lane), []).append(Action(RECV, part=move.part, peer=a, tag=tag))
    if not lists:
        return [], {}
    carrier = _Carrier(held)
    spans = run_schedule(Schedule(programs_from_lists(lists), (), {}), topology, carrier)
    return spans, {node: payload for (node, _), payload in carrier.held.items()}
