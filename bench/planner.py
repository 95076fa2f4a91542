"""Benchmark (planner issue): is the planner's choice the best, is the prediction right, is the ILP fast?

1. PipeLearn, VGG-5 and ResNet-18 on synthetic 32x32x3 data, 2 devices (speeds 0.2 and 0.5
   of this host) and a server (this host), under 4g, 4g+ and wifi: every split x
   micro-batch count trained in the emulator with *measured* timing, against the planner's
   choice (from a profile of this host), its per-device choice and PipeLearn's own rule.
2. The error of the predicted epoch time against the emulated one, over that whole sweep.
3. MP-SL's ILP for VGG-19 and ResNet-101 over 5 compute nodes: solve time, checked
   against brute force, with and without memory limits, and its cuts against even cuts.

    python bench/planner.py                  # about 8 minutes on a 2-core machine
    python bench/planner.py --models vgg5    # about 1 minute

Epochs are short (--train samples, one or two mini-batches per device) so that the sweep
fits in minutes; each configuration trains two epochs and the second is measured (the
first pays one-off costs: momentum buffers, allocator warm-up). The compute of an
action does not depend on the network, so each configuration is trained once under the
first network and its measured action durations are replayed by the event engine under
each network (the replay of the first network reproduces the emulated epoch exactly).
One torch thread (--threads) keeps timings steadier on a shared machine.
"""

from __future__ import annotations

import argparse
import copy
import itertools
import math
import statistics
import time
from dataclasses import replace

import torch

from splitpipe.config import RunConfig
from splitpipe.engine.emulate import TensorExecutor
from splitpipe.engine.events import run_schedule
from splitpipe.engine.predict import ProfileExecutor, node_profiles, predict_epoch, profile_timing
from splitpipe.engine.timing import MeasuredTiming
from splitpipe.experiment import prepare
from splitpipe.network import parse_network
from splitpipe.plan import Plan, star_topology
from splitpipe.planner import choose_split, micro_batch_choices, partition_min_max, solve_mpsl_cuts
from splitpipe.planner.calibrate import calibrate
from splitpipe.planner.choose import mpsl_costs
from splitpipe.planner.mpsl_ilp import mpsl_objective
from splitpipe.planner.pipelearn import paper_choice, with_choices
from splitpipe.planner.sizes import format_bytes
from splitpipe.profile import Profile, measure_profile
from splitpipe.report import format_table
from splitpipe.schedules import build_schedule

NETWORKS = ("4g", "4g+", "wifi")


class Recorder(MeasuredTiming):
    """Measured timing that also keeps every compute action's duration."""

    def __init__(self, speeds: dict[str, float]) -> None:
        super().__init__(speeds)
        self.durations: dict[tuple[str, object], float] = {}

    def duration(self, node, action, measured_s):  # type: ignore[no-untyped-def]
        seconds = super().duration(node, action, measured_s)
        self.durations[(node, action)] = seconds
        return seconds


class Replay(ProfileExecutor):
    """Recorded durations for compute; message sizes as the predictor (= the emulator) has them."""

    def __init__(self, durations, sizes: Profile, plan: Plan) -> None:  # type: ignore[no-untyped-def]
        super().__init__(profile_timing(plan, node_profiles(plan.topology, sizes)), sizes, plan.part_units())
        self.durations = durations

    def compute(self, node, action):  # type: ignore[no-untyped-def]
        return self.durations[(node, action)]


def per_model(spec: str, model: str) -> int:
    """'vgg5=192,resnet18=64' -> the model's value ('64' alone: every model's)."""
    values = dict(item.split("=") if "=" in item else ("*", item) for item in spec.split(","))
    return int(values.get(model, values.get("*", 0)))


def config_for(args: argparse.Namespace, model: str, network: str, train: int) -> RunConfig:
    return RunConfig(model=model, dataset=f"synthetic:train_size={train},test_size=16", devices=args.devices,
                     device_speed=args.device_speed, network=network, batch_size=args.batch_size, epochs=2,
                     progress=False)


def with_network(plan: Plan, network: str, args: argparse.Namespace) -> Plan:
    speeds = [float(s) for s in args.device_speed.split(",")]
    topology = star_topology(len(plan.owners), [parse_network(network)], speeds, 1.0)
    return replace(plan, topology=topology)


def emulate_epochs(setup, plan: Plan, measured: int):  # type: ignore[no-untyped-def]
    """Train 1 + `measured` epochs with measured timing; (spans, action durations) of the measured ones."""
    speeds = {n.name: n.speed for n in plan.topology.nodes}
    recorder = Recorder(speeds)
    executor = TensorExecutor(copy.deepcopy(setup.model), plan, setup.dataset, setup.shards, recorder)
    out = []
    for epoch in range(1 + measured):
        recorder.durations.clear()
        schedule = build_schedule(plan, epoch)
        executor.begin_epoch(epoch, schedule)
        spans = run_schedule(schedule, plan.topology, executor, epoch)
        executor.end_epoch()
        if epoch > 0:
            out.append((spans, dict(recorder.durations)))
    return out


def epoch_time(spans) -> float:  # type: ignore[no-untyped-def]
    return max(s.end for s in spans)


def sweep(args: argparse.Namespace, model: str, out: dict) -> None:  # type: ignore[type-arg]
    train, measured = per_model(args.train, model), per_model(args.epochs, model)
    setup = prepare(config_for(args, model, NETWORKS[0], train))
    counts = micro_batch_choices(args.batch_size)
    sizes = sorted({args.batch_size // n for n in counts} | {-(-args.batch_size // n) for n in counts})
    started = time.perf_counter()
    profile = measure_profile(copy.deepcopy(setup.model), (3, 32, 32), sizes, name=model,
                              repeats=args.repeats, warmup=args.warmup)
    if args.calibrate:
        profile = calibrate(profile, setup.model, setup.dataset, batch_size=args.batch_size)
    overhead = ", ".join(f"{op} {f * 1e3:.2f}+{r:.0%}" for op, (f, r) in profile.calibration.items()) or "none"
    print(f"{model}: profiled batch sizes {sizes} in {time.perf_counter() - started:.1f} s; "
          f"overhead per action (ms): {overhead}", flush=True)
    grid = [(s, n) for s in range(1, setup.plan.num_units) for n in counts]
    emulated: dict[str, dict[tuple[int, int], float]] = {net: {} for net in NETWORKS}
    predicted: dict[str, dict[tuple[int, int], float]] = {net: {} for net in NETWORKS}
    started = time.perf_counter()
    for choice in grid:
        plan = with_choices(setup.plan, [choice] * args.devices)
        epochs = emulate_epochs(setup, plan, measured)
        for net in NETWORKS:
            netplan = with_network(plan, net, args)
            times = []
            for epoch, (spans, durations) in enumerate(epochs, start=1):
                replayed = run_schedule(build_schedule(netplan, epoch), netplan.topology,
                                        Replay(durations, profile, netplan), epoch)
                if net == NETWORKS[0]:
                    assert math.isclose(epoch_time(replayed), epoch_time(spans), rel_tol=1e-12)
                times.append(epoch_time(replayed))
            emulated[net][choice] = statistics.median(times)
            predicted[net][choice] = predict_epoch(netplan, node_profiles(netplan.topology, profile), 1).time_s
    print(f"{model}: swept {len(grid)} configurations in {time.perf_counter() - started:.1f} s", flush=True)
    for net in NETWORKS:
        plan = with_network(setup.plan, net, args)
        profiles = node_profiles(plan.topology, profile)
        started = time.perf_counter()
        common = choose_split(plan, profiles, micro_batches=counts, per_device=False)
        own = choose_split(plan, profiles, micro_batches=counts, per_device=True)
        search_s = time.perf_counter() - started
        paper = paper_choice(profile, profile, plan, plan.owners[0])  # the slowest device
        best = min(emulated[net], key=emulated[net].get)
        row = {"model": model, "network": net, "sweep_best": _c(best), "best_s": emulated[net][best],
               "planner": _c(common.common), "planner_s": emulated[net][common.common],
               "gap": emulated[net][common.common] / emulated[net][best] - 1}
        if own.per_device:
            own_s = statistics.median(epoch_time(spans) for spans, _ in emulate_epochs(setup, own.plan, measured))
            row |= {"per_device": "/".join(_c(c) for c in zip(own.splits, own.micro_batches)),
                    "per_device_s": own_s, "per_device_gap": own_s / emulated[net][best] - 1}
        else:
            row |= {"per_device": "(same)", "per_device_s": row["planner_s"], "per_device_gap": row["gap"]}
        row |= {"paper_rule": _c(paper), "paper_s": emulated[net][paper],
                "paper_gap": emulated[net][paper] / emulated[net][best] - 1, "search_s": search_s}
        out["choice"].append(row)
        errors = [predicted[net][c] / emulated[net][c] - 1 for c in grid]
        out["error"].append({
            "model": model, "network": net, "configs": len(grid),
            "mean_abs_err": statistics.mean(abs(e) for e in errors), "max_abs_err": max(abs(e) for e in errors),
            "mean_err": statistics.mean(errors),
            "err_at_choice": predicted[net][common.common] / emulated[net][common.common] - 1,
        })


def _c(choice: tuple[int, int]) -> str:
    return f"s{choice[0]} N{choice[1]}"


def ilp(args: argparse.Namespace, model: str) -> list[dict[str, object]]:
    config = RunConfig(technique="mpsl", model=model, dataset=f"synthetic:train_size={args.owners * 128},test_size=8",
                       devices=args.owners, compute_nodes=5, batch_size=128, micro_batches=1, progress=False)
    setup = prepare(config)
    plan = setup.plan
    started = time.perf_counter()
    profile = measure_profile(copy.deepcopy(setup.model), (3, 32, 32), [8], name=model, repeats=1, warmup=1)
    print(f"{model}: profiled at batch 8 (scaled to 128) in {time.perf_counter() - started:.1f} s", flush=True)
    profiles = node_profiles(plan.topology, profile)
    forward, backward, memory = mpsl_costs(plan, profiles)
    first, last, owners = 1, plan.num_units - 1, len(plan.owners)
    even = (first, *(first + k * (last - first) // 5 for k in range(1, 5)), last)
    free = solve_mpsl_cuts(forward, backward, memory, None, owners=owners, first_cut=first, last_cut=last)
    least = partition_min_max([[owners * m for m in memory[first:last]]] * 5).bottleneck_s  # smallest uniform limit
    tight = [(least + max(free.memory_bytes)) / 2] * 5  # binding: the unlimited optimum no longer fits
    rows = []
    for limits in (None, tight):
        times, solution = [], None
        for _ in range(args.ilp_repeats):
            solution = solve_mpsl_cuts(forward, backward, memory, limits, owners=owners, first_cut=first,
                                       last_cut=last, names=plan.chain)
            times.append(solution.solve_s)
        assert solution is not None
        brute = _brute_force(forward, backward, memory, limits, owners, first, last)
        even_ok = limits is None or all(owners * sum(memory[a:b]) <= lim for (a, b), lim in
                                        zip(zip(even, even[1:]), limits))
        rows.append({
            "model": model, "units": plan.num_units, "owners": owners,
            "limit_per_node": format_bytes(limits[0]) if limits else "none",
            "ilp_cuts": ",".join(map(str, solution.cuts)), "objective_s": solution.objective_s,
            "brute_force_s": brute, "solve_ms": statistics.median(times) * 1e3,
            "even_objective_s": mpsl_objective(even, forward, backward)[0] if even_ok else math.nan,
            "predicted_epoch_s": predict_epoch(replace(plan, cuts=solution.cuts), profiles).time_s,
            "even_predicted_s": predict_epoch(replace(plan, cuts=even), profiles).time_s if even_ok else math.nan,
        })
    return rows


def _brute_force(forward, backward, memory, limits, owners, first, last) -> float:  # type: ignore[no-untyped-def]
    best = math.inf
    for inner in itertools.combinations(range(first + 1, last), len(forward) - 1):
        cuts = (first, *inner, last)
        if limits is not None and any(owners * sum(memory[a:b]) > lim for (a, b), lim in
                                      zip(zip(cuts, cuts[1:]), limits)):
            continue
        best = min(best, mpsl_objective(cuts, forward, backward)[0])
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="vgg5,resnet18")
    parser.add_argument("--ilp-models", default="vgg19,resnet101")
    parser.add_argument("--devices", type=int, default=2)
    parser.add_argument("--device-speed", default="0.2,0.5")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--train", default="vgg5=192,resnet18=64",
                        help="training samples of all devices together, per model: short epochs")
    parser.add_argument("--epochs", default="vgg5=3,resnet18=2",
                        help="measured epochs per configuration (after one warm-up), the median kept")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--owners", type=int, default=10)
    parser.add_argument("--ilp-repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--no-calibrate", dest="calibrate", action="store_false",
                        help="predict from the bare profile (no per-action overhead)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    out: dict[str, list[dict[str, object]]] = {"choice": [], "error": []}
    for model in filter(None, args.models.split(",")):
        sweep(args, model, out)
    ilp_rows = [row for model in filter(None, args.ilp_models.split(",")) for row in ilp(args, model)]
    print("\n## Planner's choice against the exhaustive sweep (emulated, measured timing)\n")
    print(format_table(out["choice"], list(out["choice"][0])) if out["choice"] else "(no models)")
    print("\n## Predicted against emulated epoch time (every configuration of the sweep)\n")
    print(format_table(out["error"], list(out["error"][0])) if out["error"] else "(no models)")
    print("\n## MP-SL ILP over 5 compute nodes (HiGHS via scipy.optimize.milp)\n")
    print(format_table(ilp_rows, list(ilp_rows[0])) if ilp_rows else "(no models)")
    print(f"\ntotal {time.perf_counter() - started:.0f} s, torch threads {args.threads}, devices {args.devices} "
          f"(speed {args.device_speed}), batch {args.batch_size}, train {args.train}, measured epochs {args.epochs}")


if __name__ == "__main__":
    main()
