"""Benchmark (multihop issue): MP-SL against one-hop SFL, and FTPipeHD with an even and a balanced cut.

    python bench/multihop.py --out docs/bench-multihop

1. VGG-19 on synthetic 32x32x3 data, 16 data owners (speed 0.1, 4g): one-hop SFL (one
   server, split after layer 3 of 25) against MP-SL with P = 3, 4, 5 parts (owners keep layers
   0-2 and layer 24; the compute nodes share layers 3-23). Peak memory of the busiest compute node
   (SFL: the server) and of an owner, and the epoch time.
2. FTPipeHD, 4 stages at speeds 1, 0.5, 0.2, 0.1 over wifi: an even cut (by unit count)
   against a cut balanced by hand from the profile's per-unit times.

Timing is `profile`: per-unit durations measured once on this host, then fixed, so the
epoch times are reproducible for a given profile; the training itself is real (real
tensors), which is what the memory figures count. The data set is kept small (512
training samples: 32 per owner, 2 batches of 16 each; FTPipeHD: 8 mini-batches of 64) so
that the whole run takes minutes; epoch times scale with the number of batches.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch

from splitpipe.config import RunConfig
from splitpipe.data.synthetic import load_synthetic
from splitpipe.engine.timing import part_units
from splitpipe.experiment import emulate, prepare
from splitpipe.models import build_model
from splitpipe.profile import Profile, measure_profile
from splitpipe.report import write_run

MB = 1e6
OWNERS = 16
SFL_SPLIT = 3
#: MP-SL cuts on VGG-19's 25 layers: owners keep layers 0-2 (two convs and a pool) and layer 24;
#: P-2 compute nodes share layers 3-23, cut by hand to even out their forward+backward time
#: (MACs per unit fall as the channels grow). The same cuts as on the 19 units before.
MPSL_CUTS = {3: (3, 24), 4: (3, 11, 24), 5: (3, 8, 13, 24)}
STAGE_SPEEDS = (1.0, 0.5, 0.2, 0.1)
#: FTPipeHD 4 stages: even by unit count, and balanced by hand (see `stage_table`).
FTPIPEHD_CUTS = {"even": (6, 12, 18), "balanced": (12, 16, 19)}


def markdown(rows: Sequence[Mapping[str, object]]) -> str:
    columns = list(rows[0])
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    for row in rows:
        lines.append("| " + " | ".join(_cell(row[c]) for c in columns) + " |")
    return "\n".join(lines)


def _cell(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (tuple, list)):
        return ",".join(str(v) for v in value)
    return str(value)


def write_data(path: Path, train: int, test: int) -> str:
    data = load_synthetic(train_size=train, test_size=test, seed=0)
    np.savez(path, x=data.x_train.numpy(), y=data.y_train.numpy(), x_test=data.x_test.numpy(),
             y_test=data.y_test.numpy())
    return f"npz:{path}"


def write_profile(path: Path, batch_sizes: Sequence[int]) -> Profile:
    torch.manual_seed(0)
    model = build_model("vgg19", 3, 32, 10)
    profile = measure_profile(model, (3, 32, 32), batch_sizes, name="vgg19", repeats=3, warmup=1)
    path.write_text(profile.to_json())
    return profile


def run(config: RunConfig, out: Path | None, name: str) -> dict:
    result = emulate(prepare(config))
    if out is not None:
        write_run(out / name, result.report, result.spans)
    return result.report["epochs"][-1]


def mpsl_table(dataset: str, profile: str, out: Path | None) -> list[dict[str, object]]:
    base = RunConfig(model="vgg19", dataset=dataset, devices=OWNERS, owners=OWNERS, device_speed=(0.1,),
                     server_speed=1.0, network="4g", batch_size=16, micro_batches=1, epochs=1,
                     timing="profile", profile=profile, progress=False)
    rows = []
    cases = [("sfl", 2, (SFL_SPLIT,))] + [("mpsl", p, cuts) for p, cuts in MPSL_CUTS.items()]
    for technique, parts, cuts in cases:
        if technique == "sfl":
            config = base.with_(technique="sfl", split=SFL_SPLIT)
        else:
            config = base.with_(technique="mpsl", cuts=tuple(cuts))
        row = run(config, out, f"{technique}-P{parts}")
        memory = row["memory_bytes"]
        hubs = {n: b for n, b in memory.items() if n == "server" or n.startswith("compute")}
        busiest = max(hubs, key=hubs.get)  # type: ignore[arg-type]
        rows.append({
            "technique": technique, "P": parts, "cuts": cuts, "busiest node": busiest,
            "its peak MB": hubs[busiest] / MB, "all compute nodes MB": sum(hubs.values()) / MB,
            "owner peak MB": memory["device0"] / MB, "epoch s": row["time_s"],
            "efficiency": row["efficiency"],
        })
    return rows


def stage_table(profile: Profile, micro_batch: int, micro_batches: int) -> list[dict[str, object]]:
    """Per-stage forward+backward seconds of one mini-batch at each stage's speed, per cut."""
    rows = []
    for name, cuts in FTPIPEHD_CUTS.items():
        times = [micro_batches * (profile.forward_s(units, micro_batch) + profile.backward_s(units, micro_batch))
                 / speed
                 for units, speed in zip(part_units(len(profile.units), cuts), STAGE_SPEEDS)]
        rows.append({"cut": name, "cuts": cuts, **{f"stage {s} s": t for s, t in enumerate(times)},
                     "slowest s": max(times)})
    return rows


def ftpipehd_table(dataset: str, profile: str, out: Path | None) -> list[dict[str, object]]:
    base = RunConfig(technique="ftpipehd", model="vgg19", dataset=dataset, stages=4,
                     stage_speeds=tuple(STAGE_SPEEDS), network="wifi", batch_size=64,
                     micro_batches=4, epochs=1, timing="profile", profile=profile, progress=False)
    rows = []
    for name, cuts in FTPIPEHD_CUTS.items():
        row = run(base.with_(cuts=tuple(cuts)), out, f"ftpipehd-{name}")
        rows.append({"cut": name, "cuts": cuts, "epoch s": row["time_s"], "bound s": row["bound_s"],
                     "efficiency": row["efficiency"],
                     "peak MB per stage": "/".join(f"{b / MB:.0f}" for b in row["memory_bytes"].values())})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help="write report.json and timelines here")
    parser.add_argument("--train", type=int, default=512, help="training samples (default: 32 per owner)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        dataset = write_data(Path(tmp) / "synthetic.npz", args.train, 256)
        profile = write_profile(Path(tmp) / "vgg19.json", [16])
        print(f"# Multihop benchmark: VGG-19, synthetic 32x32x3, {args.train} training samples\n")
        print("## MP-SL against one-hop SFL: 16 owners (speed 0.1, 4g), server/compute nodes speed 1\n")
        print(markdown(mpsl_table(dataset, str(Path(tmp) / "vgg19.json"), args.out)))
        print("\n## FTPipeHD, 4 stages at speeds 1, 0.5, 0.2, 0.1 (wifi), batch 64, 4 micro-batches\n")
        print("From the profile: forward+backward of one mini-batch (4 x 16) on each stage at its speed\n")
        print(markdown(stage_table(profile, 16, 4)))
        print()
        print(markdown(ftpipehd_table(dataset, str(Path(tmp) / "vgg19.json"), args.out)))
    print(f"\n(benchmark wall time {time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
