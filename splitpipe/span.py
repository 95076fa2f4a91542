"""Span: one interval of work on one resource (a node's processor or a link direction)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

__all__ = ["Span", "CATEGORIES"]

#: Colour categories of the timeline, in legend order.
CATEGORIES = ("forward", "backward", "upload", "download", "aggregate", "step")


@dataclass(frozen=True)
class Span:
    """What happened on `resource` between `start` and `end` (seconds of the epoch clock).

    `resource` is a node name ("server", "device0") or a link ("device0->server").
    `category` is one of CATEGORIES; `label` is the action's short text ("F0.1").
    """

    resource: str
    category: str
    start: float
    end: float
    epoch: int = 0
    owner: int = 0
    part: int = 0
    step: int = 0
    micro_batch: int = 0
    bytes: int = 0
    label: str = ""

    @property
    def duration(self) -> float:
        return self.end - self.start

    @property
    def is_link(self) -> bool:
        return "->" in self.resource

    def to_dict(self) -> dict[str, object]:
        return asdict(self)
