"""How real nodes call off a segment (an epoch, or part of one) a dead node spoiled, and redo it without that node.

The runtime twin of the run loop's step (4) (see loop.py and protocol.py (7), (8))::

    coordinator                          every surviving node
      (1) notices: broken stream,          |
          silence, a peer's report         |
      (2) rewind(epoch, dead) -----------> (3) weights back to the segment's mark,
          fence -> its receivers               fence -> every node it sends to,
                                               await the fences of its senders,
      <------------------------- rewound       drop every data message left
      (4) adopt(dead, owners) -----------> (5) the same re-plan from config + dead,
                                               carry_over keeps its own replicas
      (6) prepare / start: the segment again

A fence travels on the same ordered stream as the data, so once a node holds the fence of
each node that sends to it, nothing of the aborted attempt can still arrive.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from splitpipe.plan import Plan
from splitpipe.runtime.transport import Transport
from splitpipe.schedules import technique
from splitpipe.schedules.ir import RECV, SEND, Schedule

__all__ = ["peers_of", "replanned", "send_fences", "can_drop"]


def peers_of(schedule: Schedule | None, node: str) -> tuple[set[str], set[str]]:
    """The nodes `node` sends data to and receives data from in `schedule` (itself excluded)."""
    sends: set[str] = set()
    receives: set[str] = set()
    for actions in (schedule.programs.get(node, {}) if schedule else {}).values():
        for action in actions:
            if action.peer and action.peer != node:
                (sends if action.op == SEND else receives if action.op == RECV else set()).add(action.peer)
    return sends, receives


def can_drop(plan: Plan, node: str) -> bool:
    """Whether the run can go on without `node`: a data owner, or a node of a role the technique drops;
    never the coordinator (FTPipeHD's central node is its data owner too)."""
    if node == plan.server:
        return False
    record = technique(plan.technique)
    droppable = node in plan.owners or plan.topology.node(node).role in record.droppable_roles
    return droppable and record.replan is not None


def replanned(original: Plan, current: Plan, dead: Sequence[str]) -> tuple[Plan, dict[int, int]]:
    """`original` without `dead` by the technique's own re-plan, and `current`'s owner -> new owner."""
    replan = technique(original.technique).replan
    if replan is None:
        raise RuntimeError(f"{original.technique} cannot go on without {', '.join(dead)}")
    plan, _ = replan(original, sorted(dead)) if dead else (original, {})
    return plan, {i: plan.owners.index(n) for i, n in enumerate(current.owners) if n in plan.owners}


def send_fences(transport: Transport, peers: set[str], dead: Sequence[str] | Mapping[str, object]) -> None:
    """Tell each live peer that this node sends nothing more of the aborted attempt."""
    for peer in sorted(peers - set(dead)):
        transport.send_control(peer, {"type": "fence"})
