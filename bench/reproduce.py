"""Each paper's claims beside splitpipe's figure on the same setting, predicted from a committed profile.

    python bench/reproduce.py --quick     # VGG-5, MobileNetV3-Small and VGG-19, a few minutes
    python bench/reproduce.py             # adds ResNet-18 and ResNet-101
    python bench/reproduce.py --models mobilenet_v3_small   # only the rows of these models
    python bench/reproduce.py --measure   # profiles this host now instead (figures move with its load)

Every figure is the event predictor's (engine/predict.py) on the profiles committed under
configs/papers/profiles/ (bench/paper_profiles.py measured them once, on one thread of this
host; each file's `meta` says how), with node speeds from configs/papers/*.toml: the same
engine and durations the emulator's profile timing uses, without the tensors, so the papers'
full data sizes fit in minutes and every run prints the same figures. MP-SL's memory is the
planner's replica estimate.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from splitpipe.config import RunConfig  # noqa: E402
from splitpipe.engine.predict import node_profiles, predict_epoch  # noqa: E402
from splitpipe.models import build_model  # noqa: E402
from splitpipe.planner import choose_split, partition_min_max, solve_mpsl_cuts  # noqa: E402
from splitpipe.planner.choose import ftpipehd_costs, mpsl_costs  # noqa: E402
from splitpipe.planner.estimate import estimate_epoch_s  # noqa: E402
from splitpipe.planner.mpsl_cost import closed_form_epoch  # noqa: E402
from splitpipe.profile import Profile, measure_profile  # noqa: E402
from splitpipe.report import format_table  # noqa: E402
from splitpipe.setup import prepare  # noqa: E402

DATA = "synthetic"  # CIFAR-10's shape; plan_of sizes it, then sets the shard sizes
PROFILES = Path(__file__).resolve().parents[1] / "configs" / "papers" / "profiles"
MEASURE = False  # --measure: profile this host now instead of reading PROFILES


def profile_of(model: str) -> Profile:
    """The committed profile of `model` (bench/paper_profiles.py), or this host's now with --measure."""
    if MEASURE:
        net = build_model(model, 3, 32, 10)
        return measure_profile(net, (3, 32, 32), (4, 16), name=model, repeats=2, warmup=1)
    path = PROFILES / f"{model}.json"
    if not path.is_file():
        raise SystemExit(f"no committed profile {path}; measure it with: python bench/paper_profiles.py --models {model}")
    return Profile.load(path)


def plan_of(config: RunConfig, samples: int):  # type: ignore[no-untyped-def]
    """The plan of `config` with `samples` per owner (one mini-batch of synthetic data each is made)."""
    owners = config.owners or config.devices
    config = config.with_(dataset=f"synthetic:train_size={owners * config.batch_size},test_size=8,image_size=32")
    plan = prepare(config).plan
    return replace(plan, shard_sizes=(samples,) * len(plan.owners))


def pipelearn_rows(profile: Profile, model: str, quick: bool) -> list[dict[str, object]]:
    """FL, SFL and PipeLearn: 4 devices x 10,000 samples (--quick: 2,000), batch 100, devices at 0.1,
    server at 1."""
    rows, samples = [], 2000 if quick else 10_000
    for network in ("4g", "4g+", "wifi"):
        common = dict(model=model, dataset=DATA, devices=4, batch_size=100, network=(network,),
                      device_speed=(0.1,), server_speed=1.0)
        times, idle, throughput = {}, {}, {}
        for name in ("fl", "sfl", "pipelearn"):
            plan = plan_of(RunConfig(technique=name, micro_batches=1, **common), samples)
            profiles = node_profiles(plan.topology, profile)
            if name != "fl":
                counts = (1,) if name == "sfl" else ((1, 5, 10, 20) if quick else None)
                plan = choose_split(plan, profiles, micro_batches=counts, per_device=False).plan
            prediction = predict_epoch(plan, profiles)
            times[name], idle[name] = prediction.time_s, prediction.idle_s[plan.server]
            throughput[name] = float(prediction.metrics["throughput_Bps"])  # type: ignore[arg-type]
        rows.append({"claim": "PipeLearn vs FL: training time", "setting": f"{model}, {network}",
                     "paper": "up to 21.6x faster", "splitpipe": f"{times['fl'] / times['pipelearn']:.2f}x "
                     f"(FL {times['fl']:.0f} s, SFL {times['sfl']:.0f} s, PipeLearn {times['pipelearn']:.0f} s)"})
        rows.append({"claim": "PipeLearn vs FL: server idle time", "setting": f"{model}, {network}",
                     "paper": "2.2-28.5x lower", "splitpipe": f"{idle['fl'] / max(idle['pipelearn'], 1e-12):.2f}x"})
        rows.append({"claim": "PipeLearn vs FL: network throughput", "setting": f"{model}, {network}",
                     "paper": "56.6-321.3x higher", "splitpipe": f"{throughput['pipelearn'] / throughput['fl']:.1f}x "
                     f"(FL {throughput['fl'] / 1e3:.1f} kB/s, PipeLearn {throughput['pipelearn'] / 1e3:.1f} kB/s)"})
    return rows


def mpsl_rows(profile: Profile, model: str, paper_gain: str) -> list[dict[str, object]]:
    """VGG-19 (ResNet-101), batch 128, 8 Mbit/s owners, one batch in flight, owners keep a unit at each end."""
    rows = []
    base = dict(technique="mpsl", model=model, dataset=DATA, batch_size=128, micro_batches=1,
                network=("8/8/10",), device_speed=(0.1,), server_speed=1.0)
    one_hop = plan_of(RunConfig(devices=10, compute_nodes=1, **base), 5000)
    _, _, memory = mpsl_costs(one_hop, node_profiles(one_hop.topology, profile))
    n = one_hop.num_units
    single = 10 * sum(memory[1:n - 1])
    saved = []
    for hops in range(3, 7):
        plan = plan_of(RunConfig(devices=10, compute_nodes=hops, **base), 5000)
        forward, backward, memory = mpsl_costs(plan, node_profiles(plan.topology, profile))
        solution = solve_mpsl_cuts(forward, backward, memory, None, owners=10, first_cut=1, last_cut=n - 1)
        saved.append(f"{hops}: {1 - max(solution.memory_bytes) / single:.0%}")
    rows.append({"claim": "MP-SL: busiest compute node's memory vs one hop", "setting": f"{model}, 10 owners",
                 "paper": "up to 76% less (3-6 hops)", "splitpipe": "less by hops " + ", ".join(saved)})
    for owners in (10, 50):
        plan = plan_of(RunConfig(devices=owners, compute_nodes=3, **base), 5000)
        profiles = node_profiles(plan.topology, profile)
        forward, backward, memory = mpsl_costs(plan, profiles)
        solution = solve_mpsl_cuts(forward, backward, memory, None, owners=owners, first_cut=1, last_cut=n - 1)
        chosen = replace(plan, cuts=solution.cuts)
        events = estimate_epoch_s(chosen, profiles)
        closed = closed_form_epoch(chosen, profiles).time_s
        rows.append({"claim": "MP-SL: closed-form estimate's error", "setting": f"{model}, {owners} owners, 3 hops",
                     "paper": "3.14% (ResNet-101), 3.86% (VGG-19) vs measured",
                     "splitpipe": f"{closed / events - 1:+.1%} vs the event predictor ({closed:.0f} / {events:.0f} s)"})
        hand = replace(plan, cuts=middle_even(n, 3))
        even = estimate_epoch_s(hand, profiles)
        rows.append({"claim": "MP-SL: ILP cuts vs hand-picked cuts (owners keep a unit at each end, middle even)",
                     "setting": f"{model}, {owners} owners, 3 hops", "paper": paper_gain,
                     "splitpipe": f"{1 - events / even:.1%} faster (cuts {solution.cuts} vs {hand.cuts})"})
    rows += scaling_rows(profile, model, base)
    return rows


def middle_even(units: int, hops: int) -> tuple[int, ...]:
    """Owners keep the first and the last unit (as the ILP is told); the rest split as evenly as they go."""
    middle = units - 2
    return (1, *(1 + middle * k // hops for k in range(1, hops)), units - 1)


def scaling_rows(profile: Profile, model: str, base: dict[str, object]) -> list[dict[str, object]]:
    """MP-SL on 3 compute nodes (the ILP's cuts) against SFL on 3 servers (sfl --servers 3; owners keep unit 0,
    as MP-SL's owners keep their first unit): the busiest node's memory and the predicted epoch time."""
    rows = []
    sfl_base = {k: v for k, v in base.items() if k != "technique"}
    for owners in (10, 50):
        mpsl = plan_of(RunConfig(devices=owners, compute_nodes=3, **base), 5000)  # type: ignore[arg-type]
        profiles = node_profiles(mpsl.topology, profile)
        forward, backward, memory = mpsl_costs(mpsl, profiles)
        n = mpsl.num_units
        solution = solve_mpsl_cuts(forward, backward, memory, None, owners=owners, first_cut=1, last_cut=n - 1)
        mpsl = replace(mpsl, cuts=solution.cuts)
        sfl = plan_of(RunConfig(technique="sfl", devices=owners, servers=3, split=1, **sfl_base), 5000)  # type: ignore[arg-type]
        sfl_memory = math.ceil(owners / 3) * sum(memory[1:])
        mpsl_s, sfl_s = estimate_epoch_s(mpsl, profiles), estimate_epoch_s(sfl, node_profiles(sfl.topology, profile))
        rows.append({"claim": "MP-SL: multihop vs horizontally scaled SFL (3 nodes each)",
                     "setting": f"{model}, {owners} owners", "paper": "compared; figure not in PAPERS.md",
                     "splitpipe": f"busiest node: MP-SL {max(solution.memory_bytes) / 2**30:.1f} GiB, SFL "
                     f"{sfl_memory / 2**30:.1f} GiB; epoch: MP-SL {mpsl_s:.0f} s, SFL {sfl_s:.0f} s"})
    return rows


def ftpipehd_rows(profile: Profile, model: str) -> list[dict[str, object]]:
    """4 stages at 1, 0.5, 0.2, 0.1 of this host (best/worst = 10) on wifi, batch 32, 4 micro-batches."""
    config = RunConfig(technique="ftpipehd", model=model, dataset=DATA, devices=1, batch_size=32, micro_batches=4,
                       stages=4, stage_speeds=(1.0, 0.5, 0.2, 0.1), network=("wifi",))
    plan = plan_of(config, 10_000)
    profiles = node_profiles(plan.topology, profile)
    compute, link = ftpipehd_costs(plan, profiles)
    dp = replace(plan, cuts=partition_min_max(compute, link).cuts)
    even_s, dp_s = estimate_epoch_s(plan, profiles), estimate_epoch_s(dp, profiles)
    return [{"claim": "FTPipeHD: heterogeneity-aware partition", "setting": f"{model}, capacities 1/0.5/0.2/0.1",
             "paper": "6.8x faster than the prior method (best 10x the worst)",
             "splitpipe": f"DP {even_s / dp_s:.2f}x faster than even cuts (the prior method is not public)"}]


#: The models of each paper's rows: --quick runs the first ones, the full grid all of them.
GRID = {"pipelearn": (("vgg5", "mobilenet_v3_small"), ("resnet18",)), "mpsl": (("vgg19",), ("resnet101",)),
        "ftpipehd": (("vgg5",), ())}
MPSL_GAIN = {"vgg19": "19% (VGG-19)", "resnet101": "8.5% (ResNet-101)"}


def grid(quick: bool, only: set[str] | None) -> dict[str, list[str]]:
    """The models of each paper's rows in this run: --quick's or all, kept to `only` when given."""
    out = {paper: [m for m in (first if quick else first + rest) if only is None or m in only]
           for paper, (first, rest) in GRID.items()}
    known = {m for first, rest in GRID.values() for m in first + rest}
    if only is not None and only - known:
        raise SystemExit(f"--models: no rows for {', '.join(sorted(only - known))}; choose from {', '.join(sorted(known))}")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="VGG-5, MobileNetV3-Small and VGG-19 only")
    parser.add_argument("--models", help="comma-separated: only the rows of these models")
    parser.add_argument("--measure", action="store_true", help="profile this host now instead of the committed profiles")
    args = parser.parse_args()
    global MEASURE
    MEASURE = args.measure
    started = time.perf_counter()
    models = grid(args.quick, set(args.models.split(",")) if args.models else None)
    rows: list[dict[str, object]] = []
    for model in models["pipelearn"]:
        rows += pipelearn_rows(profile_of(model), model, args.quick)
        print(f"pipelearn {model} done at {time.perf_counter() - started:.0f} s", flush=True)
    for model in models["mpsl"]:
        rows += mpsl_rows(profile_of(model), model, MPSL_GAIN[model])
        print(f"mpsl {model} done at {time.perf_counter() - started:.0f} s", flush=True)
    for model in models["ftpipehd"]:
        rows += ftpipehd_rows(profile_of(model), model)
    print(format_table(rows, ["claim", "setting", "paper", "splitpipe"]))
    source = "this host's profile measured now" if MEASURE else "the profiles in configs/papers/profiles/"
    print(f"\npredicted from {source}; {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
