"""Who may send a node each data message: the plan's pairing, checked as a message arrives.

A data message is filed under its tag until a lane's Recv takes it, and a tag names one
message per epoch, so a message from a node the plan does not have send that tag would
otherwise sit there until the lane refused it (failing the run), or take the place of the
real one. The mailbox asks `Senders.refusal` first and drops what the plan does not pair:

- a schedule tag only from the peer of this node's Recv of that tag in the epoch's schedule;
- replica state (protocol.is_state_tag): to the coordinator only from the node that holds
  that replica in the epoch's schedule (a node's recovery copies: from the node of that
  number), to any other node only from the coordinator.
"""

from __future__ import annotations

from splitpipe.runtime.protocol import SHARE_BACKUP_OWNER, is_state_tag, replica_of
from splitpipe.schedules.ir import RECV, Replica, Schedule, Tag

__all__ = ["Senders"]


class Senders:
    """The expected sender of each data message `node` may receive in the epoch `expect` was given."""

    def __init__(self, node: str, coordinator: str, names: tuple[str, ...] = ()) -> None:
        self.node, self.coordinator, self.names = node, coordinator, names
        self.by_tag: dict[Tag, str] = {}
        self.replicas: set[Replica] = set()

    def expect(self, schedule: Schedule) -> None:
        """From now on, the pairing of `schedule` (an epoch's, set before any of its data can arrive)."""
        self.by_tag = {a.tag: a.peer for actions in schedule.programs.get(self.node, {}).values()
                       for a in actions if a.op == RECV and a.tag is not None and a.peer is not None}
        self.replicas = set(schedule.replicas)

    def refusal(self, src: str, tag: Tag) -> str | None:
        """Why `tag` from `src` is not taken (None: it is expected)."""
        if is_state_tag(tag):
            if tag.owner == SHARE_BACKUP_OWNER:  # numbered by the node's index in the run, whatever it holds
                held = tag.part < len(self.names) and self.names[tag.part] == src
            else:
                held = replica_of(tag, src) in self.replicas
            if src == self.coordinator or (self.node == self.coordinator and held):
                return None
            return ("only the node holding that replica sends its state" if self.node == self.coordinator
                    else f"only {self.coordinator} sends replica state")
        expected = self.by_tag.get(tag)
        if expected == src:
            return None
        return f"the plan has {expected} send it" if expected else "the plan has no node send it here"
