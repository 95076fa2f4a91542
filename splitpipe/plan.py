"""Plan and topology: who computes what, on which node, over which links."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from splitpipe.network import LinkSpec, NetworkProfile

__all__ = ["Node", "Topology", "Plan", "star_topology", "steps_per_epoch", "micro_batch_sizes"]


@dataclass(frozen=True)
class Node:
    """A process with one compute resource. `speed` is relative to this host (0.1 = 10x slower)."""

    name: str
    role: str
    speed: float = 1.0

    def __post_init__(self) -> None:
        if not (self.speed > 0 and math.isfinite(self.speed)):
            raise ValueError(f"speed of node '{self.name}' must be a positive number, got {self.speed}")


@dataclass(frozen=True)
class Topology:
    """Nodes and the directed links between them; each direction is its own resource."""

    nodes: tuple[Node, ...]
    links: Mapping[tuple[str, str], LinkSpec] = field(default_factory=dict)

    def __post_init__(self) -> None:
        names = [n.name for n in self.nodes]
        if len(set(names)) != len(names):
            raise ValueError(f"node names must be unique, got {names}")
        for src, dst in self.links:
            for end in (src, dst):
                if end not in names:
                    raise ValueError(f"link {src}->{dst} names unknown node '{end}'")

    def node(self, name: str) -> Node:
        for n in self.nodes:
            if n.name == name:
                return n
        raise ValueError(f"unknown node '{name}'; nodes are: {', '.join(n.name for n in self.nodes)}")

    def link(self, src: str, dst: str) -> LinkSpec:
        try:
            return self.links[(src, dst)]
        except KeyError:
            raise ValueError(f"no link {src}->{dst} in the topology") from None

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(n.name for n in self.nodes)


def star_topology(
    devices: int,
    networks: Sequence[NetworkProfile],
    device_speeds: Sequence[float],
    server_speed: float,
    server: str = "server",
) -> Topology:
    """N devices around one server; device i uses networks[i] (up: device -> server)."""
    if devices < 1:
        raise ValueError(f"devices must be >= 1, got {devices}")
    networks = _per_device("network", networks, devices)
    device_speeds = _per_device("device speed", device_speeds, devices)
    nodes = [Node(server, "server", server_speed)]
    links: dict[tuple[str, str], LinkSpec] = {}
    for i in range(devices):
        name = f"device{i}"
        nodes.append(Node(name, "device", device_speeds[i]))
        links[(name, server)] = networks[i].up
        links[(server, name)] = networks[i].down
    return Topology(tuple(nodes), links)


def _per_device(what: str, values: Sequence, devices: int) -> list:
    if len(values) == 1:
        return list(values) * devices
    if len(values) != devices:
        raise ValueError(f"give one {what} or one per device ({devices}), got {len(values)}")
    return list(values)


@dataclass(frozen=True)
class Plan:
    """Everything a schedule builder needs: topology, cuts, batch sizes, data per device.

    `cuts` are unit indices between parts (P-1 cuts give P parts). `shard_sizes[i]` is the
    number of training samples of data owner i. `labels` is "server" (labels travel with the
    activations) or "owner" (U-shape: the owner keeps the last part and the labels).
    """

    technique: str
    topology: Topology
    num_units: int
    cuts: tuple[int, ...]
    batch_size: int
    micro_batches: int
    shard_sizes: tuple[int, ...]
    owners: tuple[str, ...]
    server: str = "server"
    aggregation_interval: int = 1
    labels: str = "server"
    extra: Mapping[str, object] = field(default_factory=dict)

    def __post_init__(self) -> None:
        problems = []
        if self.batch_size < 1:
            problems.append(f"batch size must be >= 1, got {self.batch_size}")
        if self.micro_batches < 1:
            problems.append(f"micro-batches must be >= 1, got {self.micro_batches}")
        elif self.micro_batches > self.batch_size:
            problems.append(
                f"micro-batches ({self.micro_batches}) cannot exceed the batch size ({self.batch_size})"
            )
        if self.aggregation_interval < 1:
            problems.append(f"aggregation interval must be >= 1 epoch, got {self.aggregation_interval}")
        if len(self.shard_sizes) != len(self.owners):
            problems.append(f"{len(self.owners)} data owners but {len(self.shard_sizes)} shard sizes")
        if any(n < 1 for n in self.shard_sizes):
            problems.append(f"every data owner needs at least one sample, got shard sizes {self.shard_sizes}")
        if problems:
            raise ValueError("; ".join(problems))

    @property
    def parts(self) -> int:
        return len(self.cuts) + 1

    def fedavg_weights(self) -> tuple[float, ...]:
        """Sample weights of the data owners (FedAvg weights by samples)."""
        total = sum(self.shard_sizes)
        return tuple(n / total for n in self.shard_sizes)

    def aggregates_after(self, epoch: int) -> bool:
        return (epoch + 1) % self.aggregation_interval == 0


def steps_per_epoch(samples: int, batch_size: int) -> int:
    return math.ceil(samples / batch_size)


def micro_batch_sizes(samples: int, batch_size: int, micro_batches: int, step: int) -> list[int]:
    """Sizes of the micro-batches of mini-batch `step`: every sample kept, sizes differ by <= 1."""
    batch = min(batch_size, samples - step * batch_size)
    count = min(micro_batches, batch)
    base, extra = divmod(batch, count)
    return [base + (1 if i < extra else 0) for i in range(count)]
