"""Measure a model's per-unit forward, backward and step times and its output and parameter sizes.

Median of --repeats after --warmup runs (spread over interleaved rounds of every size and
unit, then each unit's times put on a line fixed + per-sample x samples), on this machine's
CPU or a CUDA device, at every micro-batch size the planner tries (divisors of --batch-size)
unless --batch-sizes says otherwise; then a short training run calibrates what each kind of action costs beyond its
units (planner/calibrate.py; --no-calibrate skips it). Give the JSON to run, compare and
plan as --profile, or measure a device and a server and pass them as --device-profile and
--server-profile; --speed scales the result to a machine that many times as fast.
"""

from __future__ import annotations

import argparse
import platform
from typing import Annotated

from pydantic import Field

from splitpipe.cli.flags import add_flags, given, parse_options
from splitpipe.options import Count, Counts, Options

__all__ = ["add_arguments", "execute", "ProfileOptions"]


class ProfileOptions(Options):
    model: str = "vgg5"
    """zoo model"""
    dataset: str = "digits"
    """dataset whose image shape and classes to use"""
    batch_size: Count = 32
    """mini-batch size"""
    batch_sizes: Counts | None = None
    """batch sizes to time (default: the batch size and its micro-batch sizes: batch / N for every N the
    planner tries)"""
    device: str = "cpu"
    """torch device to measure on: cpu, cuda, cuda:1"""
    repeats: Count = 7
    """timed runs per measurement, the median kept"""
    warmup: Annotated[int, Field(ge=0, le=1000)] = 3
    """untimed runs before them"""
    threads: Count | None = None
    """torch CPU threads (default: torch's)"""
    speed: Annotated[float, Field(gt=0, allow_inf_nan=False)] = 1.0
    """scale the times to a machine this many times as fast"""
    seed: Annotated[int, Field(ge=0, le=2**32 - 1)] = 0
    """seed of the model's weights and the data"""
    calibrate: bool = True
    """run the calibration (per-action costs beyond the units)"""
    out: str
    """the profile JSON to write"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_flags(parser, ProfileOptions)


def batch_sizes(options: ProfileOptions) -> list[int]:
    from splitpipe.planner import micro_batch_choices

    if options.batch_sizes:
        return sorted(set(options.batch_sizes))
    b = options.batch_size
    return sorted({b} | {b // n for n in micro_batch_choices(b)})


def execute(args: argparse.Namespace) -> int:
    import copy
    from dataclasses import replace
    from pathlib import Path

    import torch

    from splitpipe.data import load_dataset
    from splitpipe.models import build_model
    from splitpipe.planner.calibrate import calibrate
    from splitpipe.profile import measure_profile
    from splitpipe.report import format_table

    options: ProfileOptions = parse_options(ProfileOptions, given(args, ProfileOptions))
    speed = options.speed
    device = torch.device(options.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device '{options.device}' asked for but CUDA is not available on this machine")
    if options.threads is not None:
        torch.set_num_threads(options.threads)
    sizes = batch_sizes(options)
    dataset = load_dataset(options.dataset, seed=options.seed)
    torch.manual_seed(options.seed)
    model = build_model(options.model, dataset.in_channels, dataset.image_size, dataset.num_classes)
    profile = measure_profile(copy.deepcopy(model), tuple(dataset.x_train.shape[1:]), sizes, name=options.model,
                              device=options.device, repeats=options.repeats, warmup=options.warmup)
    if options.calibrate:
        profile = calibrate(profile, model, dataset, batch_size=options.batch_size, device=options.device)
    meta = {"dataset": options.dataset, "batch_sizes": sizes, "repeats": options.repeats, "warmup": options.warmup,
            "host": platform.node(), "cpu": platform.processor() or platform.machine(),
            "threads": torch.get_num_threads(), "torch": torch.__version__, "speed": speed}
    if device.type == "cuda":
        meta["gpu"] = torch.cuda.get_device_name(device)
    profile = replace(profile.scaled(speed) if speed != 1 else profile, meta=meta)
    Path(options.out).write_text(profile.to_json() + "\n")
    b = options.batch_size if options.batch_size in sizes else sizes[-1]
    rows = [{"unit": u, f"forward_ms@{b}": c.forward_s[b] * 1e3, f"backward_ms@{b}": c.backward_s[b] * 1e3,
             "step_ms": c.step_s * 1e3, "output_B/sample": c.output_bytes, "param_B": c.param_bytes}
            for u, c in enumerate(profile.units)]
    print(format_table(rows, list(rows[0])))
    costs = ", ".join(f"{op} {f * 1e3:.3g} ms + {r:.0%}" for op, (f, r) in profile.calibration.items())
    if costs:
        print(f"per-action costs beyond the units (fixed + share of the units' time): {costs}")
    print(f"{options.model} on {profile.device}: {len(profile.units)} units, batch sizes {sizes}; wrote {options.out}")
    return 0
