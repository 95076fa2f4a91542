"""The experiment flags shared by run, compare, plan and launch, and their merge with a TOML file."""

from __future__ import annotations

import argparse
from dataclasses import fields
from typing import Any

from splitpipe.config import RunConfig, load_toml

__all__ = ["add_experiment_flags", "config_from_args"]

_DEFAULTS = RunConfig()

#: flag -> (type, help). Defaults come from RunConfig; a flag left out keeps the TOML's value.
FLAGS: dict[str, tuple[Any, str]] = {
    "model": (str, "model: vgg5, resnet18, mobilenet_v3_small, vgg19, resnet101"),
    "dataset": (str, "digits (embedded), synthetic, cifar10, mnist, fashion-mnist, svhn, npz:PATH"),
    "devices": (int, "number of devices (data owners)"),
    "network": (str, "4g, 4g+, wifi, lan, dc, none, UP/DOWN/MS in Mbit/s and ms, or a comma list per device"),
    "device_speed": (str, "device speed against this host (0.1 = 10x slower), or a comma list per device"),
    "server_speed": (float, "server speed against this host (20 = a GPU server 20x this host)"),
    "batch_size": (int, "mini-batch size per device"),
    "micro_batches": (int, "micro-batches per mini-batch (PipeLearn, FTPipeHD, MP-SL; 1 = MP-SL as published)"),
    "split": (int, "cut point: the unit index where the server part starts (default: half the units)"),
    "device_splits": (str, "sfl, pipelearn: one cut point per device, a comma list (overrides --split)"),
    "device_micro_batches": (str, "pipelearn: one micro-batch count per device, a comma list"),
    "cuts": (str, "mpsl, ftpipehd: comma list of cut points, e.g. 2,10,18 (P-1 cuts for P parts; default: even)"),
    "owners": (int, "mpsl: data owners (default: --devices); --network and --device-speed are per owner"),
    "compute_nodes": (int, "mpsl: compute nodes in the chain, one per middle part (default: from --cuts, else 2)"),
    "stages": (int, "ftpipehd: stages, central node first (default: from --cuts or --stage-speeds, else 4)"),
    "stage_speeds": (str, "ftpipehd: speed of each stage against this host, central first: one or a comma list"),
    "epochs": (int, "training epochs"),
    "lr": (float, "SGD learning rate"),
    "momentum": (float, "SGD momentum"),
    "weight_decay": (float, "SGD weight decay"),
    "seed": (int, "seed for data split, shuffling and initial weights"),
    "timing": (str, "measured (host time x speed) or profile (fixed per-unit durations, reproducible)"),
    "profile": (str, "profile.json to use for --timing profile (default: measure this host at start)"),
    "device_profile": (str, "profile.json measured on a device: the data owners' durations (profile timing, prediction)"),
    "server_profile": (str, "profile.json measured on a server: every other node's durations"),
    "partition": (str, "iid or dirichlet"),
    "alpha": (float, "Dirichlet concentration for --partition dirichlet (smaller = more skewed)"),
    "aggregation_interval": (int, "epochs between FedAvg rounds"),
    "server_device": (str, "torch device for the server's parts: cpu or cuda"),
    "out": (str, "directory for report.json, metrics.csv, trace.json and plots"),
    "tensorboard": (str, "directory for TensorBoard scalars per epoch: loss, accuracy, epoch and idle time, efficiency "
                         "(needs the tensorboard extra)"),
}


def add_experiment_flags(parser: argparse.ArgumentParser, exclude: tuple[str, ...] = ()) -> None:
    """Add the config argument and every flag of FLAGS but those in `exclude` (a command's own)."""
    parser.add_argument("config", nargs="?", help="optional TOML file; its keys are the flag names with underscores")
    for name, (kind, help_text) in FLAGS.items():
        if name in exclude:
            continue
        default = getattr(_DEFAULTS, name)
        shown = f" (default: {default})" if default is not None else ""
        parser.add_argument(f"--{name.replace('_', '-')}", dest=name, type=kind, default=None, help=help_text + shown)
    parser.add_argument("--no-progress", dest="progress", action="store_false", default=None,
                        help="do not draw a progress bar")


def config_from_args(args: argparse.Namespace, **overrides: Any) -> RunConfig:
    """Defaults, then the TOML file, then the flags given on the command line."""
    values: dict[str, Any] = {}
    if getattr(args, "config", None):
        values.update(load_toml(args.config))
    names = {f.name for f in fields(RunConfig)}
    for name in names:
        given = getattr(args, name, None)
        if given is not None:
            values[name] = given
    values.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return RunConfig(**values)
    except TypeError as exc:
        raise ValueError(f"bad configuration: {exc}") from None
