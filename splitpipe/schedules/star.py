"""Plans of the one-hop techniques (fl, sl, sfl, pipelearn): devices around one server."""

from __future__ import annotations

from typing import TYPE_CHECKING

from splitpipe.data.partition import partition
from splitpipe.network import PROFILES, NetworkProfile, parse_network
from splitpipe.plan import Node, Plan, Topology, star_topology

if TYPE_CHECKING:
    import numpy as np

    from splitpipe.config import RunConfig

__all__ = ["star_plan", "split_cut", "scaled_star", "owner_server"]


def split_cut(config: RunConfig, num_units: int) -> tuple[int, ...]:
    """The one cut of a two-part technique: `split`, else half the units."""
    split = num_units // 2 if config.split is None else config.split
    if not 1 <= split <= num_units - 1:
        raise ValueError(f"split {split} out of range: must be in 1..{num_units - 1} for {config.model} ({num_units} units)")
    return (split,)


def scaled_star(star: Topology, servers: int, networks: list[NetworkProfile]) -> Topology:
    """`star` with servers server1..serverM-1 beside `server` (MP-SL's horizontally scaled SFL)::

        device0 ─┐            device1 ─┐             owner i trains on server i mod M  (1)
        device2 ─┴─ server ═══ server1 ─┴ device3     servers linked at 7 Gbit/s ("dc") (2)
                     ▲ device1, device3 also reach `server`, the aggregator, for FedAvg (3)

    (1) Owner i's data path is its own server, over its own network; (2) the server-side
    replicas travel between servers only at aggregation; (3) each owner keeps its link to
    `server`, which averages the whole models as in SFL, so owner_server reads the
    assignment back from the links (an owner linked to another server trains there).
    """
    owners = [n.name for n in star.nodes if n.role == "device"]
    if not 1 <= servers <= len(owners):
        raise ValueError(f"servers {servers} out of range: must be in 1..{len(owners)} (one server per device at most)")
    names = ["server", *(f"server{k}" for k in range(1, servers))]
    speed = star.node("server").speed
    links = dict(star.links)
    for name in names[1:]:
        links[(name, "server")], links[("server", name)] = PROFILES["dc"].up, PROFILES["dc"].down
    for i, owner in enumerate(owners):
        home = names[i % servers]
        if home != "server":
            links[(owner, home)], links[(home, owner)] = networks[i % len(networks)].up, networks[i % len(networks)].down
    return Topology(star.nodes + tuple(Node(name, "server", speed) for name in names[1:]), links)


def owner_server(plan: Plan, owner: int) -> str:
    """The server owner `owner` trains on: the one besides plan.server it is linked to, else plan.server."""
    device = plan.owners[owner]
    for node in plan.topology.nodes:
        if node.role == "server" and node.name != plan.server and (device, node.name) in plan.topology.links:
            return node.name
    return plan.server


def star_plan(
    technique: str, config: RunConfig, labels: np.ndarray, num_units: int, cuts: tuple[int, ...],
    servers: int = 1,
) -> tuple[list[np.ndarray], Plan]:
    """`config.devices` data owners device0.. around `server`, each with its own network and speed.

    Per-device cuts and micro-batch counts (device_splits, device_micro_batches) go into
    Plan.extra; setup.prepare has refused them already for techniques that do not take them.
    `servers` > 1 splits the owners among that many servers (scaled_star).
    """
    networks = [parse_network(n) for n in config.networks()]
    topology = star_topology(config.devices, networks, config.device_speeds(), config.server_speed)
    if servers > 1:
        topology = scaled_star(topology, servers, networks)
    shards = partition(labels, config.devices, config.partition, config.alpha, config.seed)
    extra: dict[str, object] = {}
    splits, counts = config.device_split_list(), config.device_micro_batch_list()
    if splits is not None:
        extra["device_cuts"] = tuple((s,) for s in splits)
    if counts is not None:
        extra["device_micro_batches"] = counts
    plan = Plan(
        technique=technique, topology=topology, num_units=num_units, cuts=cuts,
        batch_size=config.batch_size, micro_batches=config.micro_batches,
        shard_sizes=tuple(len(s) for s in shards), owners=tuple(f"device{i}" for i in range(config.devices)),
        aggregation_interval=config.aggregation_interval, extra=extra,
    )
    return shards, plan
