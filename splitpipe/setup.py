"""What every engine needs for one configuration: data, initial model, shards and plan, and the profiles.

The emulator, the predictor, the planner and every node of a real run start from `prepare`:
the same config and seed give the same data split, initial weights and plan everywhere.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch
from torch import nn

from splitpipe.config import RunConfig
from splitpipe.data import Dataset, load_dataset
from splitpipe.engine.predict import node_profiles, profile_timing
from splitpipe.engine.timing import MeasuredTiming, Timing
from splitpipe.models import build_model
from splitpipe.plan import Plan, Topology
from splitpipe.profile import Profile, measure_profile
from splitpipe.schedules import Technique, technique, techniques

__all__ = ["Setup", "prepare", "report_header", "setup_profiles", "host_profile", "make_timing",
           "accelerated_nodes"]


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

    @property
    def technique(self) -> Technique:
        return technique(self.plan.technique)


def prepare(config: RunConfig, model: nn.Sequential | None = None) -> Setup:
    """Load data, build the model (seeded) and the plan; every bad value is named.

    `model` replaces the zoo model: any nn.Sequential whose children are the units.
    """
    record = technique(config.technique)
    _check_per_device_options(config, record)
    _check_profiles(config)
    dataset = load_dataset(config.dataset, seed=config.seed)
    torch.manual_seed(config.seed)
    if model is None:
        model = build_model(config.model, dataset.in_channels, dataset.image_size, dataset.num_classes)
    elif not isinstance(model, nn.Sequential) or len(model) < 1:
        raise ValueError(f"a custom model must be a non-empty nn.Sequential of units, got {type(model).__name__}")
    shards, plan = record.make_plan(config, dataset.y_train.numpy(), len(model))
    if config.samples_per_device is not None:  # the same cut for every technique, after its own split
        shards = [shard[: config.samples_per_device] for shard in shards]
        plan = replace(plan, shard_sizes=tuple(len(shard) for shard in shards))
    _check_batch_size(config, shards)
    _check_fault_nodes(config, plan)
    return Setup(config, dataset, model, shards, plan)


def _check_fault_nodes(config: RunConfig, plan: Plan) -> None:
    """--fail, --rejoin and --speed-change must name nodes of the plan: refused before any work, in run and launch alike."""
    names = plan.topology.names
    speeds = {node: t for node, t, _ in config.speed_changes()}
    for option, times in (("fail", config.fail_times()), ("rejoin", config.rejoin_times()), ("speed-change", speeds)):
        unknown = sorted(set(times) - set(names))
        if unknown:
            raise ValueError(f"{option} names {', '.join(unknown)}, not a node of this plan ({', '.join(names)})")


def _check_profiles(config: RunConfig) -> None:
    """Read every profile file given, so that `launch` and `node` refuse a corrupt one as `run` does."""
    for path in (config.profile, config.device_profile, config.server_profile):
        if path:
            Profile.load(path)


def _check_batch_size(config: RunConfig, shards: Sequence[np.ndarray]) -> None:
    """A batch larger than a data owner's shard would be profiled and sized for samples that do not exist."""
    smallest = min((len(s) for s in shards), default=0)
    if shards and config.batch_size > smallest:
        raise ValueError(f"batch-size {config.batch_size} exceeds the smallest shard ({smallest} samples of "
                         f"{len(shards)} data owners' shards); use --batch-size {max(smallest, 1)} or fewer")


def _check_per_device_options(config: RunConfig, record: Technique) -> None:
    """Options only some techniques take (record.options) are refused, naming those that do."""
    optional = sorted({name for t in techniques() for name in t.options})
    for name in optional:
        if getattr(config, name) is not None and name not in record.options:
            takers = [t.name for t in techniques() if name in t.options]
            raise ValueError(f"{name.replace('_', '-')} applies to {' and '.join(takers)}, not {record.name}")


def accelerated_nodes(setup: Setup) -> tuple[str, ...]:
    """Nodes whose parts `--server-device` places on an accelerator (by the technique's roles)."""
    roles = setup.technique.accelerated_roles
    return tuple(n.name for n in setup.topology.nodes if n.role in roles)


def make_timing(setup: Setup, profiles: Mapping[str, Profile] | None = None) -> Timing:
    speeds = {n.name: n.speed for n in setup.topology.nodes}
    if setup.config.timing == "measured":
        return MeasuredTiming(speeds)
    return profile_timing(setup.plan, profiles or setup_profiles(setup))


def setup_profiles(setup: Setup, sizes: Sequence[int] | None = None) -> dict[str, Profile]:
    """Every node's profile: --device-profile for data owners and --server-profile for the
    other nodes where given, else --profile, else this host measured and calibrated (once
    per process) at batch sizes `sizes` (default: the plan's mini- and micro-batch sizes)."""
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
        measured = measure_profile(copy.deepcopy(setup.model), sample, sizes, name=setup.config.model)
        _HOST_PROFILES[key] = replace(measured, calibration=_host_calibration(setup, measured))
    return _HOST_PROFILES[key]


_CALIBRATIONS: dict[tuple[str, tuple[int, ...], int], dict[str, tuple[float, float]]] = {}


def _host_calibration(setup: Setup, measured: Profile) -> dict[str, tuple[float, float]]:
    """What each kind of action costs beyond its units on this host (planner/calibrate.py):
    without it a small model's prediction was 10-30% short. A few seconds of training (VGG-5
    at batch 16, with its profile: 7 s of CPU), once per process for a model, image shape and
    batch size."""
    from splitpipe.planner.calibrate import calibrate  # the planner's; imported when a host is measured

    key = (repr(setup.model), tuple(setup.dataset.x_train.shape[1:]), setup.plan.batch_size)
    if key not in _CALIBRATIONS:
        _CALIBRATIONS[key] = calibrate(measured, setup.model, setup.dataset,
                                       batch_size=setup.plan.batch_size).calibration
    return _CALIBRATIONS[key]


def report_header(setup: Setup, timing: str, engine: str = "emulate") -> dict[str, object]:
    """The part of report.json that describes the run rather than its epochs."""
    config, plan = setup.config, setup.plan
    owners = range(len(plan.owners))
    return {
        "technique": config.technique,
        "engine": engine,
        "timing": timing,
        "model": config.model,
        "dataset": config.dataset,
        "devices": config.devices,
        "network": ",".join(config.network),
        "roles": {n.name: n.role for n in setup.topology.nodes},
        "plan": {
            "cuts": list(plan.cuts),
            "micro_batches": plan.micro_batches if setup.technique.pipelined else 1,
            **({"device_cuts": [list(plan.owner_cuts(i)) for i in owners]} if "device_cuts" in plan.extra else {}),
            **({"device_micro_batches": [plan.owner_micro_batches(i) for i in owners]}
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
