"""Plans of the multihop techniques (MP-SL, FTPipeHD) from a RunConfig: cuts, chain and shards."""

from __future__ import annotations

import numpy as np

from splitpipe.config import RunConfig
from splitpipe.data import Dataset, partition
from splitpipe.models.split import check_cuts
from splitpipe.network import PROFILES, parse_network
from splitpipe.plan import Plan, chain_topology, stage_topology
from splitpipe.schedules.ftpipehd import check_stages
from splitpipe.schedules.mpsl import check_mpsl

__all__ = ["MULTIHOP", "multihop_plan", "even_cuts", "server_side_nodes"]

MULTIHOP = ("mpsl", "ftpipehd")

#: Default chain length when neither the node count nor the cuts are given.
DEFAULT_COMPUTE_NODES = 2
DEFAULT_STAGES = 4


def even_cuts(num_units: int, parts: int) -> tuple[int, ...]:
    """P-1 cuts that give every part floor or ceil of num_units / P units."""
    if not 1 <= parts <= num_units:
        raise ValueError(f"cannot cut a model of {num_units} units into {parts} parts: need 1..{num_units} parts")
    return tuple(k * num_units // parts for k in range(1, parts))


def multihop_plan(config: RunConfig, dataset: Dataset, num_units: int) -> tuple[list[np.ndarray], Plan]:
    """The training shards and the plan of an mpsl or ftpipehd run."""
    if config.technique == "mpsl":
        return _mpsl(config, dataset, num_units)
    if config.technique == "ftpipehd":
        return _ftpipehd(config, dataset, num_units)
    raise ValueError(f"'{config.technique}' is not a multihop technique; those are: {', '.join(MULTIHOP)}")


def server_side_nodes(plan: Plan) -> tuple[str, ...]:
    """Nodes that `--server-device` places on an accelerator: MP-SL's compute nodes and aggregator."""
    return (*plan.chain, plan.server) if plan.technique == "mpsl" else (plan.server,)


def _cuts(config: RunConfig, num_units: int, parts: int) -> tuple[int, ...]:
    given = config.cut_points()
    return even_cuts(num_units, parts) if given is None else check_cuts(num_units, given)


def _mpsl(config: RunConfig, dataset: Dataset, num_units: int) -> tuple[list[np.ndarray], Plan]:
    given = config.cut_points()
    compute = config.compute_nodes
    if compute is None:
        compute = DEFAULT_COMPUTE_NODES if given is None else max(1, len(given) - 1)
    cuts = _cuts(config, num_units, compute + 2)
    owners = config.devices if config.owners is None else config.owners
    topology = chain_topology(
        owners, [parse_network(n) for n in config.networks()], config.device_speeds(),
        compute, config.server_speed, PROFILES["dc"],
    )
    shards = partition(dataset.y_train.numpy(), owners, config.partition, config.alpha, config.seed)
    plan = Plan(
        technique="mpsl", topology=topology, num_units=num_units, cuts=cuts,
        batch_size=config.batch_size, micro_batches=config.micro_batches,
        shard_sizes=tuple(len(s) for s in shards), owners=tuple(f"device{i}" for i in range(owners)),
        server="aggregator", aggregation_interval=config.aggregation_interval, labels="owner",
        chain=tuple(f"compute{j}" for j in range(compute)),
    )
    check_mpsl(plan)
    return shards, plan


def _ftpipehd(config: RunConfig, dataset: Dataset, num_units: int) -> tuple[list[np.ndarray], Plan]:
    given = config.cut_points()
    speeds = config.stage_speed_list()
    stages = config.stages
    if stages is None:
        stages = len(given) + 1 if given is not None else len(speeds) if len(speeds) > 1 else DEFAULT_STAGES
    if len(speeds) not in (1, stages):
        raise ValueError(f"stage-speeds has {len(speeds)} values for {stages} stages: give one, or one per stage")
    if given is not None and len(given) != stages - 1:
        raise ValueError(f"ftpipehd with {stages} stages needs {stages - 1} cuts, got {len(given)}")
    cuts = _cuts(config, num_units, stages)
    topology = stage_topology(speeds * stages if len(speeds) == 1 else speeds,
                              [parse_network(n) for n in config.networks()])
    shards = [np.arange(len(dataset.y_train))]
    plan = Plan(
        technique="ftpipehd", topology=topology, num_units=num_units, cuts=cuts,
        batch_size=config.batch_size, micro_batches=config.micro_batches,
        shard_sizes=(len(shards[0]),), owners=("central",), server="central",
        chain=tuple(f"worker{s}" for s in range(1, stages)),
    )
    check_stages(plan)
    return shards, plan
