"""RunConfig: every option of `splitpipe run` and `compare`, typed, validated, loadable from TOML."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = ["RunConfig", "load_toml", "parse_floats", "parse_ints"]


@dataclass(frozen=True)
class RunConfig:
    """One experiment. Field names are the CLI flags with underscores."""

    technique: str = "pipelearn"
    """fl, sl, sfl, pipelearn, mpsl or ftpipehd."""
    model: str = "vgg5"
    dataset: str = "digits"
    devices: int = 4
    network: str = "4g"
    """A profile name, UP/DOWN/MS, or a comma list with one per device."""
    device_speed: str = "0.1"
    """Slowdown factor against this host (0.1 = ten times slower); a comma list for one per device."""
    server_speed: float = 1.0
    batch_size: int = 32
    micro_batches: int = 4
    split: int | None = None
    """Cut point (unit index) between device and server parts; default: half the units."""
    device_splits: str | None = None
    """sfl, pipelearn: one cut point per device (comma list), overriding `split` (the planner
    writes it when devices differ)."""
    device_micro_batches: str | None = None
    """pipelearn: one micro-batch count per device (comma list), overriding `micro_batches`."""
    cuts: str | None = None
    """mpsl and ftpipehd: comma list of cut points (unit indices), P-1 cuts for P parts;
    default: an even cut. The other techniques use `split`."""
    owners: int | None = None
    """mpsl: data owners, each keeping the first and last part (default: `devices`)."""
    compute_nodes: int | None = None
    """mpsl: compute nodes in the chain, one per middle part (default: len(cuts) - 1, else 2)."""
    stages: int | None = None
    """ftpipehd: stages, the central node and stages-1 workers (default: len(cuts) + 1, else
    one per stage speed if several are given, else 4)."""
    stage_speeds: str = "1"
    """ftpipehd: speed of each stage against this host, central first: one number or a comma list."""
    epochs: int = 5
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 0.0
    seed: int = 0
    timing: str = "measured"
    """measured: host time x speed; profile: fixed per-unit durations measured once at start."""
    profile: str | None = None
    """A profile.json for profile timing (default: measure this host at start)."""
    device_profile: str | None = None
    """A profile.json measured on a device: data owners' durations in profile timing and prediction."""
    server_profile: str | None = None
    """A profile.json measured on a server: every other node's durations in profile timing and prediction."""
    partition: str = "iid"
    alpha: float = 0.5
    aggregation_interval: int = 1
    server_device: str = "cpu"
    out: str | None = None
    tensorboard: str | None = None
    """A directory for TensorBoard scalars per epoch (`pip install 'splitpipe[tensorboard]'`); None: none."""
    progress: bool = True
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        problems = []
        if self.devices < 1:
            problems.append(f"devices must be >= 1, got {self.devices}")
        if self.batch_size < 1:
            problems.append(f"batch-size must be >= 1, got {self.batch_size}")
        if self.micro_batches < 1:
            problems.append(f"micro-batches must be >= 1, got {self.micro_batches}")
        elif self.micro_batches > self.batch_size:
            problems.append(f"micro-batches {self.micro_batches} exceeds the batch size {self.batch_size}")
        if self.epochs < 1:
            problems.append(f"epochs must be >= 1, got {self.epochs}")
        if not self.lr > 0:
            problems.append(f"lr must be > 0, got {self.lr}")
        if self.timing not in ("measured", "profile"):
            problems.append(f"timing must be 'measured' or 'profile', got '{self.timing}'")
        if self.partition not in ("iid", "dirichlet"):
            problems.append(f"partition must be 'iid' or 'dirichlet', got '{self.partition}'")
        if not self.server_speed > 0:
            problems.append(f"server-speed must be > 0, got {self.server_speed}")
        problems += self._multihop_problems()
        problems += self._per_device_problems()
        if problems:
            raise ValueError("; ".join(problems))

    def with_(self, **changes: Any) -> RunConfig:
        return replace(self, **changes)

    def _multihop_problems(self) -> list[str]:
        problems = []
        for name, value, least in (("owners", self.owners, 1), ("compute-nodes", self.compute_nodes, 1),
                                   ("stages", self.stages, 2)):
            if value is not None and value < least:
                problems.append(f"{name} must be >= {least}, got {value}")
        for check in (self.cut_points, self.stage_speed_list):
            try:
                check()
            except ValueError as exc:
                problems.append(str(exc))
        return problems

    def _per_device_problems(self) -> list[str]:
        problems = []
        for name, values in (("device-splits", self.device_splits), ("device-micro-batches", self.device_micro_batches)):
            try:
                count = len(self._per_device(name, values) or ())
            except ValueError as exc:
                problems.append(str(exc))
                continue
            if count not in (0, 1, self.devices):
                problems.append(f"{name} needs one value or one per device ({self.devices}), got {count}")
        return problems

    def _per_device(self, what: str, text: str | None) -> tuple[int, ...] | None:
        if text is None:
            return None
        values = tuple(parse_ints(what, text))
        return values * self.devices if len(values) == 1 else values

    def device_split_list(self) -> tuple[int, ...] | None:
        """`device_splits` as one cut per device, or None when not given."""
        return self._per_device("device-splits", self.device_splits)

    def device_micro_batch_list(self) -> tuple[int, ...] | None:
        """`device_micro_batches` as one count per device, or None when not given."""
        return self._per_device("device-micro-batches", self.device_micro_batches)

    def cut_points(self) -> tuple[int, ...] | None:
        """`cuts` as integers, or None when not given."""
        return None if self.cuts is None else tuple(parse_ints("cuts", self.cuts))

    def stage_speed_list(self) -> list[float]:
        return parse_floats("stage-speeds", self.stage_speeds)

    def device_speeds(self) -> list[float]:
        return parse_floats("device-speed", self.device_speed)

    def networks(self) -> list[str]:
        return [n.strip() for n in self.network.split(",")]


def parse_floats(what: str, text: str | float) -> list[float]:
    items = [text] if isinstance(text, (int, float)) else str(text).split(",")
    try:
        values = [float(v) for v in items]
    except ValueError:
        raise ValueError(f"{what} must be a number or a comma list of numbers, got '{text}'") from None
    for v in values:
        if not v > 0:
            raise ValueError(f"{what} must be > 0, got {v:g}")
    return values


def parse_ints(what: str, text: str | int | Sequence[int]) -> list[int]:
    """A comma list (or a TOML list) of integers."""
    if isinstance(text, (list, tuple)):
        items = list(text)
    else:
        items = [text] if isinstance(text, int) else [t for t in str(text).split(",") if t.strip()]
    try:
        if any(isinstance(v, (bool, float)) for v in items):
            raise ValueError
        return [int(v) for v in items]
    except ValueError:
        raise ValueError(f"{what} must be a comma list of integers, got '{text}'") from None


FIELD_NAMES = {f.name for f in fields(RunConfig)} - {"extra"}


def load_toml(path: str | Path) -> dict[str, Any]:
    """Read a run config; unknown keys are an error that names them."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"config file not found: {path}")
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"config file {path} is not valid TOML: {exc}") from None
    unknown = sorted(set(raw) - FIELD_NAMES)
    if unknown:
        raise ValueError(f"unknown keys in {path}: {', '.join(unknown)}")
    return raw
