"""One emulated experiment: data, model, plan and schedule in; report and spans out."""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from splitpipe.config import RunConfig
from splitpipe.data import Dataset, load_dataset, partition
from splitpipe.engine.emulate import TensorExecutor
from splitpipe.engine.events import run_schedule
from splitpipe.engine.predict import node_profiles, predict_epoch, profile_timing
from splitpipe.engine.timing import MeasuredTiming, Timing
from splitpipe.models import build_model
from splitpipe.multihop import MULTIHOP, multihop_plan, server_side_nodes
from splitpipe.network import parse_network
from splitpipe.plan import Plan, Topology, star_topology
from splitpipe.profile import Profile, measure_profile
from splitpipe.schedules import BUILDERS, build_schedule
from splitpipe.span import Span
from splitpipe.trace import epoch_metrics

__all__ = ["Setup", "prepare", "emulate", "RunResult"]


@dataclass
class Setup:
    """What every engine needs for one configuration: data, initial model, shards, plan."""

    config: RunConfig
    dataset: Dataset
    model: nn.Sequential
    shards: list[np.ndarray]
    plan: Plan

    @property
    def topology(self) -> Topology:
        return self.plan.topology


@dataclass
class RunResult:
    report: dict[str, object]
    spans: list[Span]
    model: nn.Sequential | None = None
    """The global model at the end (each part averaged as for evaluation)."""


def prepare(config: RunConfig, model: nn.Sequential | None = None) -> Setup:
    """Load data, build the model (seeded) and the plan; every bad value is named.

    `model` replaces the zoo model: any nn.Sequential whose children are the units.
    """
    if config.technique not in BUILDERS:
        raise ValueError(f"unknown technique '{config.technique}'; choose one of: {', '.join(BUILDERS)}")
    dataset = load_dataset(config.dataset, seed=config.seed)
    torch.manual_seed(config.seed)
    if model is None:
        model = build_model(config.model, dataset.in_channels, dataset.image_size, dataset.num_classes)
    elif not isinstance(model, nn.Sequential) or len(model) < 1:
        raise ValueError(f"a custom model must be a non-empty nn.Sequential of units, got {type(model).__name__}")
    overrides = per_device_overrides(config)  # sfl, pipelearn only: refused for the others
    if config.technique in MULTIHOP:  # mpsl, ftpipehd: chains of nodes, P >= 3 parts
        shards, plan = multihop_plan(config, dataset, len(model))
        return Setup(config, dataset, model, shards, plan)
    networks = [parse_network(n) for n in config.networks()]
    topology = star_topology(config.devices, networks, config.device_speeds(), config.server_speed)
    shards = partition(dataset.y_train.numpy(), config.devices, config.partition, config.alpha, config.seed)
    plan = Plan(
        technique=config.technique,
        topology=topology,
        num_units=len(model),
        cuts=cuts_for(config, len(model)),
        batch_size=config.batch_size,
        micro_batches=config.micro_batches,
        shard_sizes=tuple(len(s) for s in shards),
        owners=tuple(f"device{i}" for i in range(config.devices)),
        aggregation_interval=config.aggregation_interval,
        extra=overrides,
    )
    return Setup(config, dataset, model, shards, plan)


def per_device_overrides(config: RunConfig) -> dict[str, object]:
    """Plan.extra's per-owner cuts and micro-batch counts from device_splits / device_micro_batches."""
    splits, counts = config.device_split_list(), config.device_micro_batch_list()
    allowed = {"device_splits": ("sfl", "pipelearn"), "device_micro_batches": ("pipelearn",)}
    for name, values in (("device_splits", splits), ("device_micro_batches", counts)):
        if values is not None and config.technique not in allowed[name]:
            raise ValueError(f"{name.replace('_', '-')} applies to {' and '.join(allowed[name])}, "
                             f"not {config.technique}")
    extra: dict[str, object] = {}
    if splits is not None:
        extra["device_cuts"] = tuple((s,) for s in splits)
    if counts is not None:
        extra["device_micro_batches"] = counts
    return extra


def cuts_for(config: RunConfig, num_units: int) -> tuple[int, ...]:
    if config.technique == "fl":
        return ()
    split = num_units // 2 if config.split is None else config.split
    if not 1 <= split <= num_units - 1:
        raise ValueError(f"split {split} out of range: must be in 1..{num_units - 1} for {config.model} ({num_units} units)")
    return (split,)


def make_timing(setup: Setup, profiles: Mapping[str, Profile] | None = None) -> Timing:
    speeds = {n.name: n.speed for n in setup.topology.nodes}
    if setup.config.timing == "measured":
        return MeasuredTiming(speeds)
    return profile_timing(setup.plan, profiles or setup_profiles(setup))


def setup_profiles(setup: Setup, sizes: Sequence[int] | None = None) -> dict[str, Profile]:
    """Every node's profile: --device-profile for data owners and --server-profile for the
    other nodes where given, else --profile, else this host measured (once per process)
    at batch sizes `sizes` (default: the plan's mini- and micro-batch sizes)."""
    config = setup.config
    device = Profile.load(config.device_profile) if config.device_profile else None
    server = Profile.load(config.server_profile) if config.server_profile else None
    default = None if device and server else host_profile(setup, sizes)
    return node_profiles(setup.topology, default, device=device, server=server)


_HOST_PROFILES: dict[tuple[str, tuple[int, ...], tuple[int, ...]], Profile] = {}


def host_profile(setup: Setup, sizes: Sequence[int] | None = None) -> Profile:
    if setup.config.profile:
        return Profile.load(setup.config.profile)
    plan = setup.plan
    if sizes is None:
        counts = {plan.owner_micro_batches(i) for i in range(len(plan.owners))}
        sizes = sorted({plan.batch_size} | {max(1, -(-plan.batch_size // n)) for n in counts})
    sizes = tuple(sorted(set(sizes)))
    sample = tuple(setup.dataset.x_train.shape[1:])
    key = (repr(setup.model), sample, sizes)  # the same architecture costs the same: measure once
    if key not in _HOST_PROFILES:
        _HOST_PROFILES[key] = measure_profile(copy.deepcopy(setup.model), sample, sizes, name=setup.config.model)
    return _HOST_PROFILES[key]


Progress = Callable[[int, dict[str, object]], None]


def emulate(setup: Setup, progress: Progress | None = None) -> RunResult:
    """Train for config.epochs on the virtual clock; one report entry per epoch."""
    config, plan = setup.config, setup.plan
    profiles = setup_profiles(setup)  # measured once: profile timing and the prediction share it
    timing = make_timing(setup, profiles)
    node_devices = {}
    if config.server_device != "cpu":
        node_devices = {n: torch.device(config.server_device) for n in server_side_nodes(plan)}
    executor = TensorExecutor(
        setup.model, plan, setup.dataset, setup.shards, timing,
        lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay,
        seed=config.seed, node_devices=node_devices,
    )
    nodes = setup.topology.names
    links = [f"{a}->{b}" for a, b in setup.topology.links]
    epochs: list[dict[str, object]] = []
    spans: list[Span] = []
    for epoch in range(config.epochs):
        schedule = build_schedule(plan, epoch)
        executor.begin_epoch(epoch, schedule)
        wall = time.perf_counter()
        epoch_spans = run_schedule(schedule, setup.topology, executor, epoch)
        wall = time.perf_counter() - wall
        loss = executor.end_epoch()
        row: dict[str, object] = {"epoch": epoch, **epoch_metrics(epoch_spans, nodes, links)}
        row["train_loss"] = loss
        row["test_accuracy"] = executor.evaluate(schedule)
        row["wall_s"] = wall
        row["compute_wall_s"] = executor.compute_wall_s
        row["predicted_time_s"] = predict_epoch(plan, profiles, epoch).time_s
        row["memory_bytes"] = executor.memory_peaks()
        if node_devices:
            row["cuda_memory_bytes"] = executor.cuda_peaks()
        epochs.append(row)
        spans.extend(epoch_spans)
        if progress is not None:
            progress(epoch, row)
    final = executor.global_model(schedule)
    return RunResult(report_header(setup, timing.name) | {"epochs": epochs}, spans, final)


def report_header(setup: Setup, timing: str, engine: str = "emulate") -> dict[str, object]:
    config, plan = setup.config, setup.plan
    return {
        "technique": config.technique,
        "engine": engine,
        "timing": timing,
        "model": config.model,
        "dataset": config.dataset,
        "devices": config.devices,
        "network": ",".join(config.network),
        "plan": {
            "cuts": list(plan.cuts),
            "micro_batches": 1 if config.technique in ("fl", "sl", "sfl") else plan.micro_batches,
            **({"device_cuts": [list(plan.owner_cuts(i)) for i in range(len(plan.owners))]}
               if "device_cuts" in plan.extra else {}),
            **({"device_micro_batches": [plan.owner_micro_batches(i) for i in range(len(plan.owners))]}
               if "device_micro_batches" in plan.extra else {}),
            "batch_size": plan.batch_size,
            "aggregation_interval": plan.aggregation_interval,
            "shard_sizes": list(plan.shard_sizes),
            "owners": list(plan.owners),
            "chain": list(plan.chain),
            "node_speed": {n.name: n.speed for n in setup.topology.nodes},
            "device_speed": config.device_speeds(),
            "server_speed": config.server_speed,
            "lr": config.lr,
            "momentum": config.momentum,
            "seed": config.seed,
            "partition": config.partition,
        },
    }
