"""FTPipeHD's replication: recovery copies of every stage's weights, written into the programs as real transfers.

After the optimizer step of iteration i (counted over the run, from 1), S = 3::

    central  lane 0: .. U0 (1) W0 S(backup 0 -> worker1)
    worker1  lane 0: .. U1 (1) W1 S(backup 1 -> worker2) (2) S(backup 1 -> central)
    worker2  lane 0: .. U2 (1) W2 S(backup 2 -> central)
    receiver lane -1: R(backup ..)                       (3)

(1) every `replicate_every`-th iteration each stage snapshots its part and sends it to the next
stage, the last to central; (2) every `replicate_central_every`-th each worker also sends it to
central (once, where the next stage already is central); (3) the receiver takes it in its
aggregation lane, so its training never waits for a copy, and keeps it as its recovery copy of
that part (the tensor executor's `backups`). The segment ends when every copy has arrived.
"""

from __future__ import annotations

from collections.abc import Sequence

from splitpipe.plan import Plan, steps_per_epoch
from splitpipe.schedules.ir import AGG_LANE, RECV, SEND, SNAPSHOT, Action, Tag

__all__ = ["add_replication", "backup_tag", "REPLICATE_EVERY", "REPLICATE_CENTRAL_EVERY"]

#: Plan.extra keys: iterations between copies to the next stage and to the central node (0: never).
REPLICATE_EVERY = "replicate_every"
REPLICATE_CENTRAL_EVERY = "replicate_central_every"


def backup_tag(part: int, step: int, central: bool) -> Tag:
    """The recovery copy of `part` after mini-batch `step` for the next stage, or for central."""
    return Tag("backup", 0, part, step, int(central))


def add_replication(plan: Plan, epoch: int, step: int, nodes: Sequence[str],
                    lists: dict[tuple[str, int], list[Action]]) -> None:
    """Append mini-batch `step`'s replication to the stages' programs (after their step)."""
    iteration = epoch * steps_per_epoch(plan.shard_sizes[0], plan.batch_size) + step + 1
    to_next = _due(iteration, int(plan.extra.get(REPLICATE_EVERY, 0)))  # type: ignore[call-overload]
    to_central = _due(iteration, int(plan.extra.get(REPLICATE_CENTRAL_EVERY, 0)))  # type: ignore[call-overload]
    central = nodes[0]
    for s, node in enumerate(nodes):
        peers = []
        if to_next:  # (1)
            peers.append(nodes[s + 1] if s + 1 < len(nodes) else central)
        if to_central and s > 0 and central not in peers:  # (2)
            peers.append(central)
        if not peers:
            continue
        tags = [backup_tag(s, step, i > 0) for i in range(len(peers))]
        own = lists[(node, 0)]
        own.append(Action(SNAPSHOT, part=s, step=step, writes=tuple(tags)))
        for peer, tag in zip(peers, tags):
            own.append(Action(SEND, part=s, step=step, peer=peer, tag=tag))
            lists.setdefault((peer, AGG_LANE), []).append(Action(RECV, part=s, step=step, peer=node, tag=tag))  # (3)


def _due(iteration: int, every: int) -> bool:
    return every > 0 and iteration % every == 0
