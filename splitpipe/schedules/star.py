"""Plans of the one-hop techniques (fl, sl, sfl, pipelearn): devices around one server."""

from __future__ import annotations

from typing import TYPE_CHECKING

from splitpipe.data.partition import partition
from splitpipe.network import parse_network
from splitpipe.plan import Plan, star_topology

if TYPE_CHECKING:
    import numpy as np

    from splitpipe.config import RunConfig

__all__ = ["star_plan", "split_cut"]


def split_cut(config: RunConfig, num_units: int) -> tuple[int, ...]:
    """The one cut of a two-part technique: `split`, else half the units."""
    split = num_units // 2 if config.split is None else config.split
    if not 1 <= split <= num_units - 1:
        raise ValueError(f"split {split} out of range: must be in 1..{num_units - 1} for {config.model} ({num_units} units)")
    return (split,)


def star_plan(
    technique: str, config: RunConfig, labels: np.ndarray, num_units: int, cuts: tuple[int, ...]
) -> tuple[list[np.ndarray], Plan]:
    """`config.devices` data owners device0.. around `server`, each with its own network and speed.

    Per-device cuts and micro-batch counts (device_splits, device_micro_batches) go into
    Plan.extra; setup.prepare has refused them already for techniques that do not take them.
    """
    networks = [parse_network(n) for n in config.networks()]
    topology = star_topology(config.devices, networks, config.device_speeds(), config.server_speed)
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
