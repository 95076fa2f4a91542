"""Measure a model's per-unit forward, backward and step times and its output and parameter sizes.

Median of --repeats after --warmup runs, on this machine's CPU or a CUDA device, at every
micro-batch size the planner tries (divisors of --batch-size) unless --batch-sizes says
otherwise; then a short training run calibrates what each kind of action costs beyond its
units (planner/calibrate.py; --no-calibrate skips it). Give the JSON to run, compare and
plan as --profile, or measure a device and a server and pass them as --device-profile and
--server-profile; --speed scales the result to a machine that many times as fast.
"""

from __future__ import annotations

import argparse
import copy
import platform
from dataclasses import replace
from pathlib import Path

import torch

from splitpipe.config import parse_floats, parse_ints
from splitpipe.data import load_dataset
from splitpipe.models import build_model
from splitpipe.planner import micro_batch_choices
from splitpipe.planner.calibrate import calibrate
from splitpipe.profile import measure_profile
from splitpipe.report import format_table

__all__ = ["add_arguments", "execute"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default="vgg5", help="zoo model (default: vgg5)")
    parser.add_argument("--dataset", default="digits", help="dataset whose image shape and classes to use (default: digits)")
    parser.add_argument("--batch-size", type=int, default=32, help="mini-batch size (default: 32)")
    parser.add_argument("--batch-sizes", help="comma list of batch sizes to time (default: the batch size and "
                        "its micro-batch sizes: batch / N for every N the planner tries)")
    parser.add_argument("--device", default="cpu", help="torch device to measure on: cpu, cuda, cuda:1 (default: cpu)")
    parser.add_argument("--repeats", type=int, default=7, help="timed runs per measurement, the median kept (default: 7)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed runs before them (default: 3)")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    parser.add_argument("--speed", type=float, default=1.0,
                        help="scale the times to a machine this many times as fast (default: 1, as measured)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the model's weights and the data")
    parser.add_argument("--no-calibrate", dest="calibrate", action="store_false",
                        help="skip the calibration run (no per-action costs beyond the units)")
    parser.add_argument("--out", required=True, help="the profile JSON to write")


def batch_sizes(args: argparse.Namespace) -> list[int]:
    if args.batch_sizes:
        sizes = parse_ints("batch-sizes", args.batch_sizes)
    else:
        sizes = [args.batch_size] + [args.batch_size // n for n in micro_batch_choices(args.batch_size)]
    bad = [s for s in sizes if s < 1]
    if bad or args.batch_size < 1:
        raise ValueError(f"batch sizes must be >= 1, got {bad or args.batch_size}")
    return sorted(set(sizes))


def execute(args: argparse.Namespace) -> int:
    if args.repeats < 1 or args.warmup < 0:
        raise ValueError(f"repeats must be >= 1 and warmup >= 0, got {args.repeats} and {args.warmup}")
    speed = parse_floats("speed", args.speed)[0]
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device '{args.device}' asked for but CUDA is not available on this machine")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    sizes = batch_sizes(args)
    dataset = load_dataset(args.dataset, seed=args.seed)
    torch.manual_seed(args.seed)
    model = build_model(args.model, dataset.in_channels, dataset.image_size, dataset.num_classes)
    profile = measure_profile(copy.deepcopy(model), tuple(dataset.x_train.shape[1:]), sizes, name=args.model,
                              device=args.device, repeats=args.repeats, warmup=args.warmup)
    if args.calibrate:
        profile = calibrate(profile, model, dataset, batch_size=args.batch_size, device=args.device)
    meta = {"dataset": args.dataset, "batch_sizes": sizes, "repeats": args.repeats, "warmup": args.warmup,
            "host": platform.node(), "cpu": platform.processor() or platform.machine(),
            "threads": torch.get_num_threads(), "torch": torch.__version__, "speed": speed}
    if device.type == "cuda":
        meta["gpu"] = torch.cuda.get_device_name(device)
    profile = replace(profile.scaled(speed) if speed != 1 else profile, meta=meta)
    Path(args.out).write_text(profile.to_json() + "\n")
    b = args.batch_size if args.batch_size in sizes else sizes[-1]
    rows = [{"unit": u, f"forward_ms@{b}": c.forward_s[b] * 1e3, f"backward_ms@{b}": c.backward_s[b] * 1e3,
             "step_ms": c.step_s * 1e3, "output_B/sample": c.output_bytes, "param_B": c.param_bytes}
            for u, c in enumerate(profile.units)]
    print(format_table(rows, list(rows[0])))
    costs = ", ".join(f"{op} {f * 1e3:.3g} ms + {r:.0%}" for op, (f, r) in profile.calibration.items())
    if costs:
        print(f"per-action costs beyond the units (fixed + share of the units' time): {costs}")
    print(f"{args.model} on {profile.device}: {len(profile.units)} units, batch sizes {sizes}; wrote {args.out}")
    return 0
