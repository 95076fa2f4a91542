"""Per-unit cost profile: forward/backward/step seconds by batch size, output and parameter bytes.

The emulator's deterministic timing and the predictor read durations from a Profile, so
that a timeline is exactly reproducible for a given profile.
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn

from splitpipe.engine.memory import MemoryMeter
from splitpipe.linefit import smoothed

__all__ = ["UnitCost", "Profile", "measure_profile", "state_bytes"]

LABEL_BYTES = 8  # int64 per sample


@dataclass(frozen=True)
class UnitCost:
    """Costs of one unit. `forward_s[n]` is seconds for a batch of n samples."""

    forward_s: dict[int, float]
    backward_s: dict[int, float]
    step_s: float
    output_bytes: int  # per sample
    param_bytes: int  # parameters and buffers: what FedAvg and replication move


def _interpolate(table: dict[int, float], n: int) -> float:
    """Linear in the batch size through the measured points (extrapolated at the ends)."""
    sizes = sorted(table)
    if n in table:
        return table[n]
    if len(sizes) == 1:
        return table[sizes[0]] * n / sizes[0]
    lo, hi = (sizes[0], sizes[1]) if n < sizes[0] else (sizes[-2], sizes[-1])
    for a, b in zip(sizes, sizes[1:]):
        if a <= n <= b:
            lo, hi = a, b
            break
    slope = (table[hi] - table[lo]) / (hi - lo)
    return max(0.0, table[lo] + slope * (n - lo))


@dataclass(frozen=True)
class Profile:
    """A model's per-unit costs on one machine (`device`: "cpu", "cuda")."""

    model: str
    device: str
    input_bytes: int  # per sample
    units: tuple[UnitCost, ...]
    copy_s_per_byte: float = 1e-10
    meta: dict[str, object] = field(default_factory=dict)
    calibration: dict[str, tuple[float, float]] = field(default_factory=dict)
    """Per compute op ("F", "B", "U", "W", "A", "L"), and per op and place of the part
    ("F:first", "F:last", "F:middle"): (fixed seconds, ratio), so that an action takes
    time x (1 + ratio) + fixed: what running it costs beyond its units (dispatch, the first
    part's data, the last part's loss, bookkeeping), fitted by planner/calibrate.py. An
    op's place-free entry serves places without their own (a whole model). Empty: none."""

    def calibrated(self, op: str, seconds: float, place: str = "") -> float:
        fixed, ratio = self.calibration.get(f"{op}:{place}", self.calibration.get(op, (0.0, 0.0)))
        return max(0.0, seconds * (1.0 + ratio) + fixed)

    def place(self, units: range) -> str:
        """Where a part sits in the model: first, last, middle, or "" (the whole model)."""
        first, last = units.start == 0, units.stop == len(self.units)
        return "" if first and last else "first" if first else "last" if last else "middle"

    def forward_s(self, units: range, samples: int) -> float:
        return sum(_interpolate(self.units[u].forward_s, samples) for u in units)

    def backward_s(self, units: range, samples: int) -> float:
        return sum(_interpolate(self.units[u].backward_s, samples) for u in units)

    def step_s(self, units: range) -> float:
        return sum(self.units[u].step_s for u in units)

    def param_bytes(self, units: range) -> int:
        return sum(self.units[u].param_bytes for u in units)

    def boundary_bytes(self, cut: int) -> int:
        """Bytes per sample crossing cut `cut` (the output of unit cut-1; the input at 0)."""
        return self.input_bytes if cut == 0 else self.units[cut - 1].output_bytes

    def scaled(self, factor: float) -> Profile:
        """The same model on a machine `factor` times as fast."""
        units = tuple(
            UnitCost({n: t / factor for n, t in u.forward_s.items()},
                     {n: t / factor for n, t in u.backward_s.items()},
                     u.step_s / factor, u.output_bytes, u.param_bytes)
            for u in self.units
        )
        return Profile(self.model, self.device, self.input_bytes, units, self.copy_s_per_byte / factor, self.meta,
                       {op: (fixed / factor, ratio) for op, (fixed, ratio) in self.calibration.items()})

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_json(cls, text: str) -> Profile:
        raw = json.loads(text)
        units = tuple(
            UnitCost({int(k): float(v) for k, v in u["forward_s"].items()},
                     {int(k): float(v) for k, v in u["backward_s"].items()},
                     float(u["step_s"]), int(u["output_bytes"]), int(u["param_bytes"]))
            for u in raw["units"]
        )
        return cls(raw["model"], raw["device"], int(raw["input_bytes"]), units,
                   float(raw.get("copy_s_per_byte", 1e-10)), dict(raw.get("meta", {})),
                   {str(k): (float(v[0]), float(v[1])) for k, v in raw.get("calibration", {}).items()})

    @classmethod
    def load(cls, path: str | Path) -> Profile:
        path = Path(path)
        if not path.is_file():
            raise ValueError(f"profile file not found: {path}")
        try:
            return cls.from_json(path.read_text())
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"profile file {path} is not a splitpipe profile: {exc}") from None


def state_bytes(module: nn.Module) -> int:
    return sum(t.numel() * t.element_size() for t in module.state_dict().values())


Pick = Callable[[list[float]], float]
Clock = Callable[[], float]


def _median_time(fn: Callable[[], object], repeats: int, warmup: int, sync: Callable[[], object],
                 clock: Clock = time.perf_counter, pick: Pick = statistics.median) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        sync()
        t0 = clock()
        fn()
        sync()
        times.append(clock() - t0)
    return pick(times)


def _forward_backward_times(
    unit: nn.Module, inp: torch.Tensor, repeats: int, warmup: int, sync: Callable[[], object],
    clock: Clock = time.perf_counter,
) -> tuple[list[float], list[float]]:
    """Forward and backward seconds of one unit, each timed on its own, `repeats` times after `warmup`.

    The forward runs under the memory meter's saved-tensor hooks, as the executor runs every
    forward (engine/emulate.py): a Python call per saved tensor, 15-40 us per VGG-5 unit at
    2 samples on this host (bench/meter_hooks.py), which a part of four units pays four times. The input's gradient is
    dropped before each backward, so that it is stored as the executor's is, not added to the last.
    """
    forward, backward = [], []
    out = unit(inp)
    grad = torch.randn_like(out)
    meter = MemoryMeter()
    for i in range(warmup + repeats):
        inp.grad = None  # the executor's input is a fresh leaf each time: its gradient is stored, not added
        sync()
        t0 = clock()
        with meter.saving("profile", i, unit):
            out = unit(inp)
        sync()
        t1 = clock()
        out.backward(grad)
        sync()
        t2 = clock()
        meter.release(i)
        if i >= warmup:
            forward.append(t1 - t0)
            backward.append(t2 - t1)
    return forward, backward


def measure_profile(
    model: nn.Sequential,
    sample_shape: Sequence[int],
    batch_sizes: Sequence[int],
    *,
    name: str = "model",
    device: str = "cpu",
    repeats: int = 7,
    warmup: int = 3,
    lr: float = 0.01,
    clock: Clock = time.perf_counter,
    fastest: bool = False,
    rounds: int = 3,
    fit: bool = True,
) -> Profile:
    """Time every unit's forward, backward and optimizer step (median of `repeats` after `warmup`).

    The repeats are spread over `rounds` interleaved rounds (every size and unit in each), so
    that a change of the machine's load during the profile hits every size alike rather than
    one; with `fit` (and two sizes or more) each unit's times are then put on the line
    `fixed + per_sample x samples` fitted through all sizes (linefit.py), so that one noisy
    size does not skew the predictions near it. The profile keeps its form: the same sizes,
    interpolated linearly.

    `fastest` keeps the fastest repeat instead: on a host shared with other work, the time
    least inflated by the others (what bench/paper_profiles.py commits).

    Each unit runs on a real input of the right shape (the previous unit's output). The model
    is used in place: pass a copy if its BatchNorm statistics matter. `clock` is what a time
    is read from: the wall clock, or on a shared CPU host `time.thread_time` (benchmarks).
    """
    dev = torch.device(device)
    pick: Pick = min if fastest else statistics.median
    sync: Callable[[], object] = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    model = model.to(dev).train()
    sizes = sorted(set(int(b) for b in batch_sizes if b >= 1))
    if not sizes:
        raise ValueError(f"profile batch sizes must be >= 1, got {list(batch_sizes)}")
    inputs: dict[int, list[torch.Tensor]] = {}  # each unit's input at each size: the previous unit's output
    out_bytes: list[int] = [0] * len(model)
    for n in sizes:
        x = torch.randn(n, *sample_shape, device=dev)
        inputs[n] = []
        for u, unit in enumerate(model):
            inputs[n].append(x.detach().requires_grad_(u > 0))
            with torch.no_grad():
                x = unit(x)
            out_bytes[u] = x[0].numel() * x.element_size()
    rounds = max(1, min(rounds, repeats))
    forward: list[dict[int, list[float]]] = [{n: [] for n in sizes} for _ in model]
    backward: list[dict[int, list[float]]] = [{n: [] for n in sizes} for _ in model]
    for r in range(rounds):
        share = repeats // rounds + (1 if r < repeats % rounds else 0)
        for n in sizes if r % 2 == 0 else reversed(sizes):  # alternate the order: no size always first
            for u, unit in enumerate(model):
                f, b = _forward_backward_times(unit, inputs[n][u], share, warmup if r == 0 else 1, sync, clock)
                forward[u][n] += f
                backward[u][n] += b
    costs = []
    for u, unit in enumerate(model):
        params = [p for p in unit.parameters() if p.requires_grad]
        step_s = 0.0
        if params:
            opt = torch.optim.SGD(params, lr=lr, momentum=0.9)
            for p in params:
                p.grad = torch.zeros_like(p)
            step_s = _median_time(opt.step, repeats, warmup, sync, clock, pick)
        f_s = {n: pick(times) for n, times in forward[u].items()}
        b_s = {n: pick(times) for n, times in backward[u].items()}
        if fit and len(sizes) > 1:
            f_s, b_s = smoothed(f_s), smoothed(b_s)
        costs.append(UnitCost(f_s, b_s, step_s, out_bytes[u], state_bytes(unit)))
    copy = _copy_cost(dev, repeats, warmup, sync, clock)
    input_bytes = int(torch.Size(sample_shape).numel()) * 4
    return Profile(name, dev.type, input_bytes, tuple(costs), copy)


def _copy_cost(dev: torch.device, repeats: int, warmup: int, sync: Callable[[], object],
               clock: Clock = time.perf_counter) -> float:
    """Seconds per byte of averaging/copying weights (FedAvg, snapshot, load)."""
    a = torch.randn(1 << 20, device=dev)
    b = torch.randn(1 << 20, device=dev)
    seconds = _median_time(lambda: a.mul(0.5).add_(b, alpha=0.5), repeats, warmup, sync, clock)
    return seconds / a.nbytes
