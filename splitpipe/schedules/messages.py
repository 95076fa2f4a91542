"""The send/recv pass, so that builders write compute only and every message is placed by one rule."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field

from splitpipe.schedules.ir import RECV, SEND, Action, Programs, Tag

__all__ = ["add_messages"]

Slot = tuple[str, int]  # (node, lane)


@dataclass
class _Placed:
    """Where one lane's new messages go: Recvs before position i, Sends after it."""

    before: dict[int, list[Action]] = field(default_factory=dict)
    after: dict[int, list[tuple[int, Action]]] = field(default_factory=dict)


def add_messages(programs: Programs, links: Collection[tuple[str, str]], relay: Slot | None = None) -> Programs:
    """Compute-only programs in, the same programs with their Sends and Recvs out.

    Contract: each tag is written by one action (`data` is read where it lives and never
    moves). For each lane that reads a tag written on another lane (of any node: lanes of
    one node meet by a message to themselves)::

        writer lane : .. W(tag) S(tag)  ..            (1) a Send right after the writer
        reader lane : ..   R(tag) X(tag) .. X(tag)    (2) a Recv right before the first reader

    (1) Sends after one writer go in the order of its `writes`, then of the reading lanes
    (nodes, then lanes, in program order). (2) Recvs before one reader go in the order of
    its `reads`. (3) Where the writer's node has no link to the reader's, the message goes
    through `relay` (node, lane): a Recv and a Send appended to that lane, in the order of
    the writers (nodes, lanes, positions in program order). The input is not changed.
    """
    writer = _writers(programs)
    placed: dict[Slot, _Placed] = {}
    relayed: list[tuple[tuple[int, int, int], Action, Action]] = []
    for node, lanes in programs.items():
        for lane, program in lanes.items():
            seen: set[Tag] = set()
            for pos, action in enumerate(program):
                for tag in action.reads:
                    if tag.kind == "data" or tag in seen or tag not in writer:
                        continue
                    seen.add(tag)
                    w_node, w_lane, w_pos, w_action = writer[tag]
                    if (w_node, w_lane) == (node, lane):
                        continue
                    hop = node
                    if w_node != node and (w_node, node) not in links:  # (3)
                        if relay is None:
                            raise ValueError(f"no link {w_node}->{node} for {tag} and no relay lane given")
                        hop = relay[0]
                        relayed.append(((_rank(programs, w_node, w_lane), w_pos, len(relayed)),
                                        Action(RECV, peer=w_node, tag=tag, samples=w_action.samples),
                                        Action(SEND, peer=node, tag=tag, samples=w_action.samples)))
                    send = Action(SEND, peer=hop, tag=tag, samples=w_action.samples)
                    rank = w_action.writes.index(tag)
                    placed.setdefault((w_node, w_lane), _Placed()).after.setdefault(w_pos, []).append((rank, send))  # (1)
                    recv = Action(RECV, peer=w_node if hop == node else hop, tag=tag, samples=w_action.samples)
                    placed.setdefault((node, lane), _Placed()).before.setdefault(pos, []).append(recv)  # (2)
    out = _weave(programs, placed)
    if relayed:
        assert relay is not None
        forwards = list(out.setdefault(relay[0], {}).get(relay[1], ()))
        for _, recv, send in sorted(relayed, key=lambda r: r[0]):
            forwards += [recv, send]
        out[relay[0]][relay[1]] = tuple(forwards)
    return out


def _writers(programs: Programs) -> dict[Tag, tuple[str, int, int, Action]]:
    writer: dict[Tag, tuple[str, int, int, Action]] = {}
    for node, lanes in programs.items():
        for lane, program in lanes.items():
            for pos, action in enumerate(program):
                for tag in action.writes:
                    writer.setdefault(tag, (node, lane, pos, action))
    return writer


def _rank(programs: Programs, node: str, lane: int) -> int:
    """A lane's place in program order (nodes, then lanes)."""
    slots = [(n, ln) for n, lanes in programs.items() for ln in lanes]
    return slots.index((node, lane))


def _weave(programs: Programs, placed: dict[Slot, _Placed]) -> Programs:
    out: Programs = {}
    for node, lanes in programs.items():
        out[node] = {}
        for lane, program in lanes.items():
            where = placed.get((node, lane), _Placed())
            actions: list[Action] = []
            for pos, action in enumerate(program):
                actions += where.before.get(pos, [])
                actions.append(action)
                actions += [a for _, a in sorted(where.after.get(pos, []), key=lambda r: r[0])]
            out[node][lane] = tuple(actions)
    return out
