"""validate(schedule): every unmatched message, duplicate tag and self-wait of a schedule, reported at once."""

from __future__ import annotations

from collections import defaultdict

from splitpipe.schedules.ir import RECV, SEND, Action, Schedule, Tag

__all__ = ["validate", "problems"]

#: How many problems the one-line error spells out; the count says how many there are.
SHOWN = 3


def validate(schedule: Schedule) -> Schedule:
    """Return `schedule` if it is sound, else raise one ValueError whose one line counts the
    problems and names the first few (`problems` lists them all)."""
    found = problems(schedule)
    if found:
        more = "; ..." if len(found) > SHOWN else ""
        raise ValueError(f"schedule invalid: {len(found)} problem{'s' * (len(found) > 1)}: "
                         f"{'; '.join(found[:SHOWN])}{more}")
    return schedule


def problems(schedule: Schedule) -> list[str]:
    """Unmatched Sends and Recvs, then duplicate tags, then self-waits and unmet reads."""
    return [*_unmatched(schedule), *_duplicates(schedule), *_self_waits(schedule)]


def _where(node: str, lane: int, pos: int, action: Action) -> str:
    what = f"{action.op} {action.tag}" if action.op in (SEND, RECV) else action.label
    return f"{node} lane {lane} #{pos} {what}"


def _unmatched(schedule: Schedule) -> list[str]:
    sends: dict[tuple[str, str, Tag | None], list[str]] = defaultdict(list)
    recvs: dict[tuple[str, str, Tag | None], list[str]] = defaultdict(list)
    for node, lanes in schedule.programs.items():
        for lane, program in lanes.items():
            for pos, a in enumerate(program):
                if a.op == SEND:
                    sends[(node, a.peer, a.tag)].append(_where(node, lane, pos, a))
                elif a.op == RECV:
                    recvs[(a.peer, node, a.tag)].append(_where(node, lane, pos, a))
    out = [f"{w} to {key[1]} has no matching recv" for key, ws in sends.items() if key not in recvs for w in ws]
    out += [f"{w} from {key[0]} has no matching send" for key, ws in recvs.items() if key not in sends for w in ws]
    return out


def _duplicates(schedule: Schedule) -> list[str]:
    seen: dict[tuple[str, str, Tag], list[str]] = defaultdict(list)
    for node, lanes in schedule.programs.items():
        for lane, program in lanes.items():
            for pos, a in enumerate(program):
                where = _where(node, lane, pos, a)
                if a.op == SEND and a.tag is not None:
                    seen[("sent to", a.peer, a.tag)].append(where)
                elif a.op == RECV and a.tag is not None:
                    seen[("received on", node, a.tag)].append(where)
                for tag in a.writes:
                    seen[("written on", node, tag)].append(where)
    return [f"duplicate tag {tag}: {what} {node} {len(ws)} times ({', '.join(ws)})"
            for (what, node, tag), ws in seen.items() if len(ws) > 1]


def _self_waits(schedule: Schedule) -> list[str]:
    """Walk each lane: a tag it reads (a compute read, or the tag of a Send) must be written or
    received earlier on the same lane; one that comes only later on it is a self-wait."""
    out = []
    for node, lanes in schedule.programs.items():
        for lane, program in lanes.items():
            later = _makers(node, program)
            have: set[Tag] = set()
            for pos, a in enumerate(program):
                needs = a.reads if a.is_compute else (a.tag,) if a.op == SEND and a.tag else ()
                if a.op == RECV and a.peer == node and a.tag is not None:
                    own = [p for p in later.get(a.tag, ()) if p > pos and program[p].op == SEND]
                    if own:
                        out.append(f"{_where(node, lane, pos, a)} waits for its own send #{own[0]}")
                for tag in needs:
                    if tag in have:
                        continue
                    if tag.kind == "data":
                        if schedule.owners.get(tag.owner) != node:
                            out.append(f"{_where(node, lane, pos, a)} reads {tag}, but owner {tag.owner}'s "
                                       f"data is on {schedule.owners.get(tag.owner, 'no node')}")
                        continue
                    after = [p for p in later.get(tag, ()) if p > pos and program[p].op != SEND]
                    if after:
                        out.append(f"{_where(node, lane, pos, a)} reads {tag} before its own #{after[0]} makes it")
                    else:
                        out.append(f"{_where(node, lane, pos, a)} reads {tag}, which its lane never makes")
                have.update(a.writes)
                if a.op == RECV and a.tag is not None:
                    have.add(a.tag)
    return out


def _makers(node: str, program: tuple[Action, ...]) -> dict[Tag, list[int]]:
    """Positions in `program` that make each tag: writers, Recvs, and Sends to the node itself."""
    makers: dict[Tag, list[int]] = defaultdict(list)
    for pos, a in enumerate(program):
        for tag in a.writes:
            makers[tag].append(pos)
        if a.tag is not None and (a.op == RECV or (a.op == SEND and a.peer == node)):
            makers[a.tag].append(pos)
    return makers
