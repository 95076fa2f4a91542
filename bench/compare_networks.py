"""Benchmark (foundation issue): FL, SFL and PipeLearn for VGG-5 on synthetic 32x32x3 data with
4 slow devices (speed 0.1) and a server (speed 1) under 4g, 4g+ and wifi; the emulator's own
overhead; and a sweep of device speed against network that shows where PipeLearn overtakes FL.

    python bench/compare_networks.py --out docs/bench-foundation

Each device holds 2,000 of 8,000 synthetic samples (PipeLearn's paper: 10,000), so the
once-per-epoch FedAvg is amortised over 20 mini-batches as in a real epoch.

Timing is `profile` (per-unit durations measured once on this host, then fixed), so the
tables are reproducible for a given profile; the overhead section uses `measured` timing.
SFL's split and PipeLearn's split and micro-batch count are chosen per network by the
planner (`splitpipe plan`, one choice shared by all devices) from the same profile;
`--split S --micro-batches N` fixes them instead.
"""

from __future__ import annotations

import argparse
import copy
import tempfile
from pathlib import Path

from splitpipe.config import RunConfig
from splitpipe.engine.predict import node_profiles
from splitpipe.experiment import emulate, prepare
from splitpipe.planner.choose import plan_for
from splitpipe.profile import Profile, measure_profile
from splitpipe.report import format_table, summarize, write_run

NETWORKS = ("4g", "4g+", "wifi")
TECHNIQUES = ("fl", "sfl", "pipelearn")
SPEEDS = (0.02, 0.05, 0.1, 0.2, 0.5)


def base_config(args: argparse.Namespace, profile: str | None) -> RunConfig:
    return RunConfig(
        model="vgg5", dataset=f"synthetic:train_size={args.train_size}", devices=4, device_speed=(0.1,), server_speed=1.0,
        batch_size=100, micro_batches=args.micro_batches or 4, split=args.split, epochs=1,
        timing="profile" if profile else "measured", profile=profile, progress=False,
    )


def host_profile(path: Path) -> str:
    setup = prepare(RunConfig(model="vgg5", dataset="synthetic", progress=False))
    sizes = [100, 50, 25, 20, 10, 5]
    profile = measure_profile(copy.deepcopy(setup.model), (3, 32, 32), sorted(set(sizes)), name="vgg5", repeats=7)
    path.write_text(profile.to_json())
    return str(path)


def planned(config: RunConfig, args: argparse.Namespace, profile: str) -> RunConfig:
    """The planner's split (and micro-batches for PipeLearn) for this network, unless fixed by flags."""
    if config.technique == "fl" or (args.split and (args.micro_batches or config.technique == "sfl")):
        return config
    setup = prepare(config)
    profiles = node_profiles(setup.topology, Profile.load(profile))
    settings = plan_for(setup.plan, profiles, per_device=False).settings
    return config.with_(split=args.split or settings["split"],
                        micro_batches=args.micro_batches or settings.get("micro_batches", 1))


def table_by_network(args: argparse.Namespace, profile: str, out: Path | None) -> list[dict[str, object]]:
    rows = []
    for network in NETWORKS:
        for technique in TECHNIQUES:
            config = planned(base_config(args, profile).with_(technique=technique, network=network), args, profile)
            result = emulate(prepare(config))
            s = summarize(result.report)
            plan = result.report["plan"]
            rows.append({"technique": technique, "network": network,
                         "split": plan["cuts"][0] if plan["cuts"] else "-", "micro_batches": plan["micro_batches"],
                         "epoch_time_s": s["epoch_time_s"],
                         "server_idle_s": s["server_idle_s"], "throughput_MBps": s["throughput_Bps"] / 1e6,
                         "efficiency": s["efficiency"]})
            if out is not None:
                write_run(out / f"{technique}-{network}", result.report, result.spans)
    return rows


def overhead(args: argparse.Namespace) -> dict[str, object]:
    config = base_config(args, None).with_(technique="pipelearn", network="wifi", epochs=2, split=args.split or 2)
    epochs = emulate(prepare(config)).report["epochs"]
    last = epochs[-1]  # the first epoch pays for warm-up
    return {"technique": "pipelearn", "wall_s": last["wall_s"], "compute_wall_s": last["compute_wall_s"],
            "overhead": last["wall_s"] / last["compute_wall_s"]}


def sweep(args: argparse.Namespace, profile: str) -> list[dict[str, object]]:
    rows = []
    for network in NETWORKS:
        for speed in SPEEDS:
            times = {}
            for technique in ("fl", "pipelearn"):
                config = planned(base_config(args, profile).with_(technique=technique, network=network,
                                                                  device_speed=(speed,)), args, profile)
                times[technique] = emulate(prepare(config)).report["epochs"][0]["time_s"]
            rows.append({"network": network, "device_speed": speed, "fl_s": times["fl"],
                         "pipelearn_s": times["pipelearn"], "speedup": times["fl"] / times["pipelearn"]})
    return rows


def plot_sweep(rows: list[dict[str, object]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for network in NETWORKS:
        pts = [r for r in rows if r["network"] == network]
        ax.plot([r["device_speed"] for r in pts], [r["speedup"] for r in pts], marker="o", label=network)
    ax.axhline(1.0, color="grey", lw=0.8, ls="--")
    ax.set_xscale("log")
    ax.set_xlabel("device speed (x this host)")
    ax.set_ylabel("FL epoch time / PipeLearn epoch time")
    ax.set_title("Where PipeLearn overtakes FL (VGG-5, 4 devices)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split", type=int, default=None, help="fix the split (default: the planner's)")
    parser.add_argument("--micro-batches", type=int, default=None, help="fix PipeLearn's micro-batches")
    parser.add_argument("--train-size", type=int, default=8000,
                        help="synthetic training samples, split over 4 devices (default 8000: 20 mini-batches each)")
    parser.add_argument("--out", type=Path, default=None, help="write run folders and plots here")
    args = parser.parse_args()
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        profile = host_profile(Path(tmp) / "vgg5.json")
        rows = table_by_network(args, profile, args.out)
        print("## FL, SFL and PipeLearn by network (profile timing, one epoch)\n")
        print(format_table(rows, list(rows[0])))
        print("\n## Emulation overhead (measured timing)\n")
        row = overhead(args)
        print(format_table([row], list(row)))
        sweep_rows = sweep(args, profile)
        print("\n## Device speed sweep: FL / PipeLearn epoch time\n")
        print(format_table(sweep_rows, list(sweep_rows[0])))
        if args.out:
            plot_sweep(sweep_rows, args.out / "sweep.png")


if __name__ == "__main__":
    main()
