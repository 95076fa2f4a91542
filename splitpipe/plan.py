"""Plan and topology: who computes what, on which node, over which links."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

from splitpipe.data.batching import split_micro_batches
from splitpipe.linkbook import Channel, channel
from splitpipe.network import LinkSpec, NetworkProfile

__all__ = ["Node", "Topology", "Plan", "star_topology", "chain_topology", "stage_topology",
           "steps_per_epoch", "micro_batch_sizes"]


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
    """Nodes and the directed links between them.

    Each direction is its own resource, except for nodes in `radios`: everything such a node
    sends shares one uplink and everything it receives one downlink (splitpipe/linkbook.py).
    """

    nodes: tuple[Node, ...]
    links: Mapping[tuple[str, str], LinkSpec] = field(default_factory=dict)
    radios: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        names = [n.name for n in self.nodes]
        if len(set(names)) != len(names):
            raise ValueError(f"node names must be unique, got {names}")
        for src, dst in self.links:
            for end in (src, dst):
                if end not in names:
                    raise ValueError(f"link {src}->{dst} names unknown node '{end}'")
        unknown = sorted(set(self.radios) - set(names))
        if unknown:
            raise ValueError(f"radios name unknown nodes {unknown}; nodes are: {', '.join(names)}")

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

    def channel(self, src: str, dst: str) -> Channel:
        """The resource a transfer src -> dst holds (its link, or a radio of one end)."""
        return channel(src, dst, self.radios)

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


def _per_device(what: str, values: Sequence, devices: int, each: str = "device") -> list:
    if len(values) == 1:
        return list(values) * devices
    if len(values) != devices:
        raise ValueError(f"give one {what} or one per {each} ({devices}), got {len(values)}")
    return list(values)


#: Plan.extra keys that hold one entry per data owner (they follow the owners when some are dropped).
PER_OWNER = ("device_cuts", "device_micro_batches")


def chain_topology(
    owners: int,
    networks: Sequence[NetworkProfile],
    owner_speeds: Sequence[float],
    compute_nodes: int,
    compute_speed: float | Sequence[float],
    chain_network: NetworkProfile,
    aggregator: str = "aggregator",
    aggregator_speed: float | None = None,
) -> Topology:
    """MP-SL: owners device0.. talk to the first and last of compute0..computeC-1 and to the
    aggregator over their own network (up: from the owner); compute nodes talk to their
    neighbours over `chain_network` (up: towards the later node).

    Each owner has a radio: its links to compute0, to the last compute node and to the
    aggregator share one uplink and one downlink (`Topology.radios`), so what it sends to
    two of them queues on one channel. `compute_speed`: one for every compute node or one
    each; the aggregator runs at `aggregator_speed` (default: the first compute node's).
    """
    if owners < 1 or compute_nodes < 1:
        raise ValueError(f"mpsl needs at least 1 owner and 1 compute node, got {owners} and {compute_nodes}")
    networks = _per_device("network", networks, owners, "owner")
    owner_speeds = _per_device("device speed", owner_speeds, owners, "owner")
    chain = [f"compute{j}" for j in range(compute_nodes)]
    speeds = _per_device("compute speed", [compute_speed] if isinstance(compute_speed, (int, float))
                         else list(compute_speed), compute_nodes, "compute node")
    nodes = [Node(aggregator, "aggregator", speeds[0] if aggregator_speed is None else aggregator_speed)]
    nodes += [Node(name, "compute", speed) for name, speed in zip(chain, speeds)]
    links: dict[tuple[str, str], LinkSpec] = {}
    for a, b in zip(chain, chain[1:]):
        links[(a, b)], links[(b, a)] = chain_network.up, chain_network.down
    for i in range(owners):
        name = f"device{i}"
        nodes.append(Node(name, "device", owner_speeds[i]))
        for peer in (chain[0], chain[-1], aggregator):
            links[(name, peer)], links[(peer, name)] = networks[i].up, networks[i].down
    return Topology(tuple(nodes), links, frozenset(f"device{i}" for i in range(owners)))


def stage_topology(speeds: Sequence[float], networks: Sequence[NetworkProfile]) -> Topology:
    """FTPipeHD: `central` (stage 0) then worker1..workerS-1 in a chain; hop s (stage s-1 to s)
    uses networks[s-1], up for activations and down for gradients.

    Labels go straight from central to the last worker over a link of the first hop's up
    profile (the central node's access network), not relayed along the chain: they are a
    few bytes per sample and a relay would make every worker wait on them. Each worker sends
    its weights (replication) straight to the central node over its own hop's down profile.
    """
    if len(speeds) < 2:
        raise ValueError(f"ftpipehd needs at least 2 stages (central and a worker), got {len(speeds)}")
    names = ["central", *(f"worker{s}" for s in range(1, len(speeds)))]
    networks = _per_device("network", networks, len(names) - 1, "hop between stages")
    nodes = [Node(names[0], "central", speeds[0])]
    nodes += [Node(name, "worker", speed) for name, speed in zip(names[1:], speeds[1:])]
    links: dict[tuple[str, str], LinkSpec] = {}
    for s in range(1, len(names)):
        links[(names[s - 1], names[s])] = networks[s - 1].up
        links[(names[s], names[s - 1])] = networks[s - 1].down
    links.setdefault((names[0], names[-1]), networks[0].up)
    for s in range(2, len(names)):  # recovery copies go from every worker to the central node
        links[(names[s], names[0])] = networks[s - 1].down
    return Topology(tuple(nodes), links)


@dataclass(frozen=True)
class Plan:
    """Everything a schedule builder needs: topology, cuts, batch sizes, data per device.

    `cuts` are unit indices between parts (P-1 cuts give P parts). `shard_sizes[i]` is the
    number of training samples of data owner i. `labels` is "server" (labels travel with the
    activations) or "owner" (U-shape: the owner keeps the last part and the labels).

    Per-owner overrides (SFL and PipeLearn): `extra["device_cuts"][i]` replaces `cuts` and
    `extra["device_micro_batches"][i]` replaces `micro_batches` for data owner i. Owners
    whose cuts differ hold different *part ids*: layout k (the k-th distinct cuts, in owner
    order) owns part ids k*P .. k*P+P-1, and `part_units()` says which units each id holds.
    Without overrides there is one layout and part id p is simply part p.
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
    chain: tuple[str, ...] = ()
    """Multihop techniques: the nodes that hold the parts between the owners' in order
    (MP-SL's compute nodes, FTPipeHD's workers); empty for one-hop techniques."""

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
        problems += self._override_problems()
        if problems:
            raise ValueError("; ".join(problems))

    def _override_problems(self) -> list[str]:
        problems = []
        owners = len(self.owners)
        device_cuts = self.extra.get("device_cuts")
        if device_cuts is not None:
            if len(device_cuts) != owners:  # type: ignore[arg-type]
                problems.append(f"device cuts need one entry per data owner ({owners}), got {device_cuts}")
            for cuts in device_cuts:  # type: ignore[attr-defined]
                if len(cuts) != len(self.cuts) or not _increasing_within(tuple(cuts), self.num_units):
                    problems.append(
                        f"device cuts {tuple(cuts)} must be {len(self.cuts)} increasing unit indices "
                        f"in 1..{self.num_units - 1}, like cuts {self.cuts}"
                    )
        per_owner = self.extra.get("device_micro_batches")
        if per_owner is not None:
            if len(per_owner) != owners:  # type: ignore[arg-type]
                problems.append(f"device micro-batches need one entry per data owner ({owners}), got {per_owner}")
            bad = [n for n in per_owner if not 1 <= n <= self.batch_size]  # type: ignore[attr-defined]
            if bad:
                problems.append(f"device micro-batches {bad} out of range: each must be in 1..{self.batch_size}")
        return problems

    @property
    def parts(self) -> int:
        return len(self.cuts) + 1

    def fedavg_weights(self) -> tuple[float, ...]:
        """Sample weights of the data owners (FedAvg weights by samples)."""
        total = sum(self.shard_sizes)
        return tuple(n / total for n in self.shard_sizes)

    def aggregates_after(self, epoch: int) -> bool:
        return (epoch + 1) % self.aggregation_interval == 0

    def owner_cuts(self, owner: int) -> tuple[int, ...]:
        """The cuts of data owner `owner`'s lane."""
        device_cuts = self.extra.get("device_cuts")
        return self.cuts if device_cuts is None else tuple(device_cuts[owner])  # type: ignore[index]

    def owner_micro_batches(self, owner: int) -> int:
        """The micro-batch count of data owner `owner`'s lane."""
        per_owner = self.extra.get("device_micro_batches")
        return self.micro_batches if per_owner is None else int(per_owner[owner])  # type: ignore[index]

    def layouts(self) -> tuple[tuple[int, ...], ...]:
        """The distinct cuts in use, in owner order (one entry without per-owner cuts)."""
        if self.extra.get("device_cuts") is None:
            return (self.cuts,)
        return tuple(dict.fromkeys(self.owner_cuts(i) for i in range(len(self.owners))))

    def owner_part(self, owner: int, part: int) -> int:
        """Part id of part `part` (0..P-1) in `owner`'s lane."""
        return self.layouts().index(self.owner_cuts(owner)) * self.parts + part

    def without_owners(self, gone: Sequence[str]) -> tuple[Plan, dict[int, int]]:
        """This plan without data owners `gone` (and their links), and old owner -> new owner.

        The survivors keep their names and order; per-owner overrides follow them, and
        FedAvg's sample weights renormalise over them by construction.
        """
        unknown = sorted(set(gone) - set(self.owners))
        if unknown:
            raise ValueError(f"cannot drop {', '.join(unknown)}: the data owners are {', '.join(self.owners)}")
        keep = [i for i, owner in enumerate(self.owners) if owner not in gone]
        if not keep:
            raise RuntimeError(f"no data owner left after dropping {', '.join(gone)}")
        topology = Topology(
            tuple(n for n in self.topology.nodes if n.name not in gone),
            {ends: spec for ends, spec in self.topology.links.items() if not set(ends) & set(gone)},
            self.topology.radios - set(gone),
        )
        extra = {key: tuple(value[i] for i in keep) if key in PER_OWNER else value  # type: ignore[attr-defined,index]
                 for key, value in self.extra.items()}
        plan = replace(self, topology=topology, owners=tuple(self.owners[i] for i in keep),
                       shard_sizes=tuple(self.shard_sizes[i] for i in keep), extra=extra)
        return plan, {old: new for new, old in enumerate(keep)}

    def part_units(self) -> tuple[range, ...]:
        """The units of each part id: P ranges per layout."""
        out: list[range] = []
        for cuts in self.layouts():
            bounds = [0, *cuts, self.num_units]
            out += [range(a, b) for a, b in zip(bounds, bounds[1:])]
        return tuple(out)


def _increasing_within(cuts: tuple[int, ...], num_units: int) -> bool:
    return all(isinstance(c, int) and 1 <= c < num_units for c in cuts) and list(cuts) == sorted(set(cuts))


def steps_per_epoch(samples: int, batch_size: int) -> int:
    return math.ceil(samples / batch_size)


def micro_batch_sizes(samples: int, batch_size: int, micro_batches: int, step: int) -> list[int]:
    """Sizes of the micro-batches of mini-batch `step`: every sample kept, sizes differ by <= 1."""
    batch = min(batch_size, samples - step * batch_size)
    return [s.stop - s.start for s in split_micro_batches(batch, micro_batches)]
