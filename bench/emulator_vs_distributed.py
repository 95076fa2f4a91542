"""Benchmark (distributed issue): one plan in the emulator and in the distributed runtime.

    python bench/emulator_vs_distributed.py --out docs/bench-distributed

The plan: VGG-5 on synthetic 32x32x3 data (2000 training samples, 500 per device), 4
devices and a server at this host's speed (or slower devices: --device-speed 0.1, which the
launch stands in for with --emulate-speed), 4g links (10/25 Mbit/s, 30 ms), batch 32,
PipeLearn with 4 micro-batches (and SFL). The emulator uses `measured` timing (each action's
host time); the distributed run is `splitpipe launch`: one process per node on this machine,
loopback gRPC, each link shaped in its sender. The table gives both epoch times and the
relative error of the emulator's figure, |emulated - real| / real, per epoch and for the mean.
Both engines give each compute action the same number of torch threads (CPUs / nodes), so
that an action takes as long in the emulator as on a node of the launch.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import torch

from splitpipe.config import RunConfig
from splitpipe.experiment import emulate, prepare
from splitpipe.report import format_table
from splitpipe.runtime.launcher import launch

COLUMNS = ["technique", "device_speed", "server_device", "epoch", "emulated_s", "distributed_s", "error", "emu_acc", "dist_acc"]


def plan(technique: str, args: argparse.Namespace) -> RunConfig:
    return RunConfig(technique=technique, model="vgg5", dataset="synthetic", devices=4, network="4g",
                     device_speed=args.device_speed, server_speed=1.0, batch_size=32, micro_batches=4,
                     epochs=args.epochs, timing="measured", server_device=args.server_device, progress=False)


def distributed(config: RunConfig, threads: int) -> dict[str, object]:
    slow = any(s != 1 for s in config.device_speeds())
    with tempfile.TemporaryDirectory(prefix="bench-distributed-") as out:
        launch(config.with_(out=out), timeout=600, threads=threads, emulate_speed=slow)
        return json.loads((Path(out) / "report.json").read_text())


def compare(technique: str, args: argparse.Namespace) -> list[dict[str, object]]:
    config = plan(technique, args)
    setup = prepare(config)
    threads = args.threads or max(1, (os.cpu_count() or 1) // len(setup.topology.names))
    torch.set_num_threads(threads)  # each action runs on as many threads as on a node of the launch
    emulated = emulate(setup).report["epochs"]
    real = distributed(config, threads)["epochs"]
    rows = []
    for emu, dist in zip(emulated, real):  # type: ignore[call-overload]
        rows.append({"technique": technique, "device_speed": args.device_speed,
                     "server_device": config.server_device, "epoch": emu["epoch"],
                     "emulated_s": emu["time_s"], "distributed_s": dist["time_s"],
                     "error": abs(emu["time_s"] - dist["time_s"]) / dist["time_s"],
                     "emu_acc": emu["test_accuracy"], "dist_acc": dist["test_accuracy"]})
    mean_emu = sum(r["emulated_s"] for r in rows) / len(rows)  # type: ignore[misc]
    mean_dist = sum(r["distributed_s"] for r in rows) / len(rows)  # type: ignore[misc]
    rows.append({"technique": technique, "device_speed": args.device_speed,
                 "server_device": config.server_device, "epoch": "mean",
                 "emulated_s": mean_emu, "distributed_s": mean_dist, "error": abs(mean_emu - mean_dist) / mean_dist,
                 "emu_acc": rows[-1]["emu_acc"], "dist_acc": rows[-1]["dist_acc"]})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--techniques", default="pipelearn,sfl", help="comma list (default: pipelearn,sfl)")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--server-device", default="cpu", help="cpu or cuda, in both engines")
    parser.add_argument("--device-speed", default="1", help="device speed against this host; below 1 the "
                        "launch stretches each device action with --emulate-speed (default: 1)")
    parser.add_argument("--threads", type=int, help="torch threads of the emulator and of each node "
                        "(default: CPUs / nodes, what launch gives each node)")
    parser.add_argument("--out", help="directory for results.json")
    args = parser.parse_args()
    started = time.perf_counter()
    rows = [row for t in args.techniques.split(",") for row in compare(t.strip(), args)]
    print(format_table(rows, COLUMNS))
    print(f"(benchmark took {time.perf_counter() - started:.0f} s)")
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        name = f"results-{args.server_device}-speed{args.device_speed}.json"
        (out / name).write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
