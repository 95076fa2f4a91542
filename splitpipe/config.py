"""RunConfig: every option of an experiment, declared once (type, default, range, help), loadable from TOML."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, model_validator

from splitpipe.options import (
    MAX_COUNT,
    Count,
    Events,
    Finite,
    Ints,
    Names,
    Options,
    SpeedChanges,
    Speeds,
    event_times,
    load_toml,
    speed_changes,
)
from splitpipe.schedules.registry import DEFAULT

__all__ = ["RunConfig", "load_toml"]

Positive = Annotated[float, Field(gt=0, allow_inf_nan=False)]


def _torch_device(value: str) -> str:
    """Checked when the config is read, not when the first part is moved after profiling."""
    if not re.fullmatch(r"cpu|mps|cuda(:\d{1,3})?", value):
        raise ValueError(f"'{value[:40]}' is not a device this runs on: use cpu, cuda, cuda:N or mps")
    return value


Device = Annotated[str, AfterValidator(_torch_device)]


class RunConfig(Options):
    """One experiment. Field names are the TOML keys and, with dashes, the CLI flags."""

    technique: str = DEFAULT
    """a technique of the registry: fl, sl, sfl, sfl2, pipelearn, mpsl or ftpipehd (see Techniques below)"""
    model: str = "vgg5"
    """vgg5 (PipeLearn's VGG-5), resnet18 (CIFAR variant), mobilenet_v3_small, vgg19 or resnet101; from Python
    any nn.Sequential of units"""
    dataset: str = "digits"
    """digits (scikit-learn's embedded 8x8 digits), synthetic (random 3x32x32 images for timing), npz:PATH
    (arrays x, y, optional x_test, y_test), cifar10, mnist, fashion-mnist or svhn (these four with the vision
    extra, data under $SPLITPIPE_DATA)"""
    devices: Count = 4
    """number of devices (data owners), among which the training set is split (seeded)"""
    samples_per_device: Count | None = None
    """training samples per data owner: each owner's shard cut to its first N (the papers' 10,000 per device;
    default: the whole training set, split)"""
    network: Names = ("4g",)
    """a profile below (4g, 4g+, wifi, lan, dc, none) or UP/DOWN/MS in Mbit/s, Mbit/s and ms; a list gives one
    per device"""
    device_speed: Speeds = (0.1,)
    """device speed against this host (0.1 = 10x slower); a list gives one per device"""
    server_speed: Positive = 1.0
    """server speed against this host (20 = a GPU server 20x this host)"""
    batch_size: Count = 32
    """mini-batch size per device"""
    micro_batches: Count = 4
    """micro-batches per mini-batch (PipeLearn, FTPipeHD, MP-SL; 1 = MP-SL as published)"""
    split: int | None = None
    """cut point: the unit index where the server part starts (default: half the units)"""
    device_splits: Ints | None = None
    """sfl, pipelearn: one cut point per device, overriding split (the planner writes it when devices differ)"""
    servers: Count | None = None
    """sfl: servers the devices are split among (device i on server i mod M, the servers linked at 7 Gbit/s),
    the server-side replicas averaged across servers at aggregation: MP-SL's horizontally scaled baseline
    (default 1)"""
    device_micro_batches: Ints | None = None
    """pipelearn: one micro-batch count per device, overriding micro_batches"""
    cuts: Ints | None = None
    """mpsl, ftpipehd: cut points (unit indices), P-1 cuts for P parts, e.g. 2,10,18 (default: even)"""
    owners: Count | None = None
    """mpsl: data owners, each keeping the first and last part (default: devices)"""
    compute_nodes: Count | None = None
    """mpsl: compute nodes in the chain, one per middle part (default: from cuts or compute_speeds, else 2)"""
    compute_speeds: Speeds | None = None
    """mpsl: speed of each compute node against this host, in chain order: one or one per node (default:
    server_speed)"""
    stages: Annotated[int, Field(ge=2, le=MAX_COUNT)] | None = None
    """ftpipehd: stages, central node first (default: from cuts or stage_speeds, else 4)"""
    stage_speeds: Speeds = (1.0,)
    """ftpipehd: speed of each stage against this host, central first: one or one per stage"""
    replicate_every: Annotated[int, Field(ge=0, le=MAX_COUNT)] = 100
    """ftpipehd: iterations between each stage sending its weights to the next stage (the last to the central
    node) as its recovery copy; 0: never"""
    replicate_central_every: Annotated[int, Field(ge=0, le=MAX_COUNT)] = 200
    """ftpipehd: iterations between each worker sending its weights to the central node; 0: never"""
    pipeline: Literal["sync", "async"] = "sync"
    """ftpipehd: sync (1F1B over micro-batches, one optimizer step per mini-batch: the weights of one process)
    or async (the paper's code: PipeDream's 1F1B over mini-batches, a step after each backward, weight stashing)"""
    repartition_every: Annotated[int, Field(ge=0, le=MAX_COUNT)] = 10
    """ftpipehd: iterations between the central node's re-partition checks: stages' capacities measured from
    their own actions' times, the DP re-run, the layers moved when the gain beats the move; 0: never"""
    speed_change: SpeedChanges = ()
    """NODE@T=SPEED: from T seconds after training starts (the emulator's clock; wall seconds in real runs,
    from the first epoch's start) NODE computes at SPEED against this host; repeat or list for several"""
    epochs: Count = 5
    """training epochs"""
    lr: Positive = 0.01
    """SGD learning rate"""
    momentum: Finite = 0.9
    """SGD momentum"""
    weight_decay: Finite = 0.0
    """SGD weight decay"""
    seed: Annotated[int, Field(ge=0, le=2**32 - 1)] = 0
    """seed for data split, shuffling and initial weights"""
    timing: Literal["measured", "profile"] = "measured"
    """measured (host time x speed) or profile (fixed per-unit durations, reproducible); see Time below"""
    profile: str | None = None
    """profile.json for profile timing (default: measure this host at start)"""
    device_profile: str | None = None
    """profile.json measured on a device: the data owners' durations (profile timing, prediction)"""
    server_profile: str | None = None
    """profile.json measured on a server: every other node's durations"""
    partition: Literal["iid", "dirichlet"] = "iid"
    """iid or dirichlet"""
    alpha: Positive = 0.5
    """Dirichlet concentration for partition dirichlet (smaller = more skewed)"""
    aggregation_interval: Count = 1
    """epochs between FedAvg rounds"""
    server_device: Device = "cpu"
    """torch device for the server's parts: cpu or cuda"""
    fail: Events = ()
    """NODE@T: node NODE dies at T seconds on the emulator's clock (epochs end to end); repeat or list for
    several. Data owners (and FTPipeHD's workers) are dropped and the run goes on; see Faults"""
    rejoin: Events = ()
    """NODE@T: a failed node comes back at the first epoch boundary after T seconds"""
    round_deadline: Positive | None = None
    """seconds (the emulator's clock; wall seconds in real runs) after the epoch that ends a round began: an owner
    still training then is left out of that round's FedAvg (its update discarded) and takes part again in the next"""
    out: str | None = None
    """directory for report.json, metrics.csv, plots, the trained model.safetensors and checkpoints/"""
    checkpoint_every: Annotated[int, Field(ge=0, le=MAX_COUNT)] | None = None
    """epochs between checkpoints under out/checkpoints (default: 1 when out is given; 0: none)"""
    keep_checkpoints: Count = 2
    """how many of the newest checkpoints to keep"""
    tensorboard: str | None = None
    """directory for TensorBoard scalars per epoch: loss, accuracy, epoch and idle time, efficiency (needs the
    tensorboard extra)"""
    progress: bool = True
    """draw a progress bar"""
    extra: dict[str, Any] = Field(default_factory=dict, json_schema_extra={"internal": True})

    @model_validator(mode="after")
    def _consistent(self) -> RunConfig:
        problems = []
        if self.micro_batches > self.batch_size:
            problems.append(f"micro-batches {self.micro_batches} exceeds the batch size {self.batch_size}")
        for name, values in (("device-splits", self.device_splits), ("device-micro-batches", self.device_micro_batches)):
            if values is not None and len(values) not in (0, 1, self.devices):
                problems.append(f"{name} needs one value or one per device ({self.devices}), got {len(values)}")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def _per_device(self, values: tuple[int, ...] | None) -> tuple[int, ...] | None:
        return values * self.devices if values is not None and len(values) == 1 else values

    def device_split_list(self) -> tuple[int, ...] | None:
        """`device_splits` as one cut per device, or None when not given."""
        return self._per_device(self.device_splits)

    def device_micro_batch_list(self) -> tuple[int, ...] | None:
        """`device_micro_batches` as one count per device, or None when not given."""
        return self._per_device(self.device_micro_batches)

    def cut_points(self) -> tuple[int, ...] | None:
        return self.cuts

    def stage_speed_list(self) -> list[float]:
        return list(self.stage_speeds)

    def device_speeds(self) -> list[float]:
        return list(self.device_speed)

    def networks(self) -> list[str]:
        return list(self.network)

    def fail_times(self) -> dict[str, float]:
        return event_times(self.fail)

    def rejoin_times(self) -> dict[str, float]:
        return event_times(self.rejoin)

    def speed_changes(self) -> list[tuple[str, float, float]]:
        """(node, seconds, speed) in time order."""
        return speed_changes(self.speed_change)
