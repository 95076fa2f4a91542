"""Benchmark (planner issue): is the planner's choice the best, is the prediction right, is the ILP fast?

1. PipeLearn with VGG-5, ResNet-18 and MobileNetV3-Small on synthetic 32x32x3 data, 2 devices and
   a server (this host): every split x micro-batch count (down to 1-2 samples per micro-batch) is
   trained in the emulator with *measured* timing, then replayed under 4g, 4g+ and wifi and under
   device speeds from 0.02 to 1.
2. The error of the predicted epoch time (from a calibrated profile of this host) against that
   emulated one: per row, and mean and worst per model and network and over the whole grid.
3. The planner's choice against the sweep's best (speeds 0.2, 0.5), its per-device choice and
   PipeLearn's own rule.
4. MP-SL's ILP for VGG-19 and ResNet-101 over 5 compute nodes: solve time, checked
   against brute force, with and without memory limits, and its cuts against even cuts.

    python bench/planner.py                  # the whole grid: about 15 minutes on a 2-core machine
    python bench/planner.py --quick          # a reduced grid (3 splits, 3 micro-batch counts), errors only
    python bench/planner.py --quick --json   # one JSON object: mean_error, worst_error, rows, ...
    python bench/planner.py --quick --remeasure   # also: a second measurement scored against the first

--remeasure says what this host can judge: if two emulations of the same configuration differ
by as much as the prediction does, the error left is the measurement's, not the predictor's
(and a second profile, calibrated on the same runs, says how far the profile's own noise moves
the prediction).

Epochs are short (--train samples, a few mini-batches per device) so that the sweep fits in
minutes; each configuration trains one warm-up epoch and then --epochs measured ones, whose
median is kept. The measured epochs, the profile and the calibration runs take turns (each of
--epochs passes has a share of the profile's repeats, an epoch of the calibration runs and an
epoch of every configuration), so that the host's slow and fast spells meet them alike. The compute of an action depends on neither the network nor the node's speed
(measured timing divides the host's seconds by the speed), so each configuration is trained
once at speed 1 and its measured host seconds are replayed by the event engine under each
network and speed set (the replay at speed 1 reproduces the emulated epoch exactly; an assert
checks it). One torch thread (--threads) keeps timings steadier on a shared machine.
"""

from __future__ import annotations

import argparse
import copy
import itertools
import json
import math
import statistics
import sys
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
from splitpipe.planner.calibrate import CalibrationRuns, fit_calibration
from splitpipe.planner.choose import mpsl_costs
from splitpipe.planner.mpsl_ilp import mpsl_objective
from splitpipe.planner.pipelearn import paper_choice, with_choices
from splitpipe.planner.sizes import format_bytes
from splitpipe.profile import Profile, measure_profile
from splitpipe.report import format_table
from splitpipe.schedules import build_schedule

NETWORKS = ("4g", "4g+", "wifi")
#: Device speed sets of the grid (2 devices each): phones, the planner's earlier case, this host.
SPEEDS = ("0.02,0.05", "0.2,0.5", "1,1")
CHOICE_SPEEDS = "0.2,0.5"  # the speed set the planner's choice is checked at
#: --clock: what profile, calibration and emulator read. "cpu" (this thread's CPU time) is what
#: the work costs with one torch thread, whatever else the machine runs; "wall" is the emulator's own.
CLOCKS = {"wall": time.perf_counter, "cpu": time.thread_time}
CLOCK = "wall"


class Recorder(MeasuredTiming):
    """Measured timing that also keeps every compute action's host seconds."""

    def __init__(self, speeds: dict[str, float]) -> None:
        super().__init__(speeds)
        self.host_s: dict[tuple[str, object], float] = {}

    def duration(self, node, action, measured_s):  # type: ignore[no-untyped-def]
        self.host_s[(node, action)] = measured_s
        return super().duration(node, action, measured_s)


class Replay(ProfileExecutor):
    """Recorded host seconds over the node's speed for compute (as measured timing has them);
    message sizes as the predictor (= the emulator) has them."""

    def __init__(self, host_s, sizes: Profile, plan: Plan) -> None:  # type: ignore[no-untyped-def]
        super().__init__(profile_timing(plan, node_profiles(plan.topology, sizes)), sizes, plan.part_units())
        self.host_s = host_s
        self.speeds = {n.name: n.speed for n in plan.topology.nodes}

    def compute(self, node, action):  # type: ignore[no-untyped-def]
        return self.host_s[(node, action)] / self.speeds[node]


def per_model(spec: str, model: str) -> str:
    """'vgg5=192,resnet18=64' -> the model's value ('64' alone: every model's; '' if none)."""
    values = dict(item.split("=", 1) if "=" in item else ("*", item) for item in spec.split(";" if ";" in spec
                                                                                             else ","))
    return values.get(model, values.get("*", ""))


def config_for(args: argparse.Namespace, model: str, train: int) -> RunConfig:
    return RunConfig(model=model, dataset=f"synthetic:train_size={train},test_size=16", devices=args.devices,
                     device_speed=(1.0,), network=(NETWORKS[0],), batch_size=args.batch_size, epochs=2,
                     progress=False)


def with_network(plan: Plan, network: str, speeds: str) -> Plan:
    device_speeds = [float(s) for s in speeds.split(",")]
    topology = star_topology(len(plan.owners), [parse_network(network)], device_speeds, 1.0)
    return replace(plan, topology=topology)


class Emulation:
    """One configuration trained with measured timing, an epoch at a time (the first a warm-up)."""

    def __init__(self, setup, plan: Plan) -> None:  # type: ignore[no-untyped-def]
        self.plan = plan
        self.recorder = Recorder({n.name: n.speed for n in plan.topology.nodes})
        self.executor = TensorExecutor(copy.deepcopy(setup.model), plan, setup.dataset, setup.shards, self.recorder,
                                       clock=CLOCKS[CLOCK])
        self.epochs = 0
        self.measured: list[tuple[list, dict]] = []  # (spans, host seconds per action) of every epoch but the first

    def epoch(self) -> None:
        self.recorder.host_s.clear()
        schedule = build_schedule(self.plan, self.epochs)
        self.executor.begin_epoch(self.epochs, schedule)
        spans = run_schedule(schedule, self.plan.topology, self.executor, self.epochs)
        self.executor.end_epoch()
        if self.epochs > 0:
            self.measured.append((spans, dict(self.recorder.host_s)))
        self.epochs += 1


def emulate_epochs(setup, plan: Plan, measured: int):  # type: ignore[no-untyped-def]
    """Train 1 + `measured` epochs with measured timing; (spans, host seconds per action) of the measured ones."""
    emulation = Emulation(setup, plan)
    for _ in range(1 + measured):
        emulation.epoch()
    return emulation.measured


def replayed_epoch_s(emulation: Emulation, plan: Plan, profile: Profile, check: bool = False) -> float:
    """The median of `emulation`'s measured epochs replayed under `plan`'s network and speeds (`check`:
    the plan is the one trained, so the replay must give the emulated epoch exactly)."""
    times = []
    for epoch, (spans, host_s) in enumerate(emulation.measured, start=1):
        replayed = run_schedule(build_schedule(plan, epoch), plan.topology, Replay(host_s, profile, plan), epoch)
        if check:
            assert math.isclose(epoch_time(replayed), epoch_time(spans), rel_tol=1e-12)
        times.append(epoch_time(replayed))
    return statistics.median(times)


def epoch_time(spans) -> float:  # type: ignore[no-untyped-def]
    return max(s.end for s in spans)


def median_profile(profiles: list[Profile]) -> Profile:
    """Each unit's time per size, its step and the copy cost: the median over `profiles` (of one model)."""
    def med(values):  # type: ignore[no-untyped-def]
        return statistics.median(values)

    units = tuple(replace(costs[0], forward_s={n: med(c.forward_s[n] for c in costs) for n in costs[0].forward_s},
                          backward_s={n: med(c.backward_s[n] for c in costs) for n in costs[0].backward_s},
                          step_s=med(c.step_s for c in costs))
                  for costs in zip(*(p.units for p in profiles)))
    return replace(profiles[0], units=units, copy_s_per_byte=med(p.copy_s_per_byte for p in profiles))


def measured_in_turns(args: argparse.Namespace, model: str, setup, counts, plans: list[Plan],  # type: ignore[no-untyped-def]
                      passes: int, copies: int = 1) -> tuple[list[Profile], list[Emulation]]:
    """`copies` calibrated profiles and every plan's emulated epochs, measured in `passes` turns.

    Each pass takes a share of the profile's repeats, one epoch of the calibration runs and
    one epoch of every configuration, so that the host's slow and fast spells (on this shared
    2-core VM a fixed unit's CPU time moves by +-20% for seconds at a time) meet the profile,
    the calibration and each configuration alike instead of whichever ran at that moment.
    """
    sizes = sorted({args.batch_size // n for n in counts} | {-(-args.batch_size // n) for n in counts})
    started = time.perf_counter()
    emulations = [Emulation(setup, plan) for plan in plans]
    runs = (CalibrationRuns(setup.model, setup.dataset, batch_size=args.batch_size, clock=CLOCKS[args.clock])
            if args.calibrate else None)
    for warming in [*emulations, *([runs] if runs else [])]:  # the warm-up epochs
        warming.epoch()
    shares: list[list[Profile]] = [[] for _ in range(copies)]

    def profile_share(k: int) -> Profile:
        share = args.repeats // passes + (1 if k < args.repeats % passes else 0)
        return measure_profile(copy.deepcopy(setup.model), (3, 32, 32), sizes, name=model, repeats=max(1, share),
                               warmup=args.warmup, clock=CLOCKS[args.clock], fit=args.fit,
                               rounds=max(1, args.rounds // passes))
    for k in range(passes):
        shares[0].append(profile_share(k))
        if runs is not None:
            runs.epoch()
        for emulation in emulations:
            emulation.epoch()
        for more in shares[1:]:   # a second profile, at the other end of the pass
            more.append(profile_share(k))
    profiles = [median_profile(measured) for measured in shares]
    if runs is not None:
        profiles = [fit_calibration(profile, runs.seen()) for profile in profiles]
    overhead = ", ".join(f"{op} {f * 1e3:.2f}+{r:.0%}" for op, (f, r) in profiles[0].calibration.items()) or "none"
    log(f"{model}: profiled batch sizes {sizes} ({copies}x), calibrated and emulated {len(plans)} configurations in "
        f"{passes} passes, {time.perf_counter() - started:.1f} s; overhead per action (ms): {overhead}")
    return profiles, emulations


def grid_of(args: argparse.Namespace, model: str, num_units: int) -> list[tuple[int, int]]:
    counts = [int(n) for n in per_model(args.micro_batches, model).split("/")]
    spec = per_model(args.splits, model)
    if spec == "all":
        splits = list(range(1, num_units))
    elif spec == "three":
        splits = sorted({1, num_units // 2, num_units - 1})
    elif spec.startswith("every"):
        splits = list(range(1, num_units, int(spec[5:])))
    else:
        splits = [int(x) for x in spec.split("/")]
    return [(s, n) for s in splits for n in counts]


def sweep(args: argparse.Namespace, model: str, out: dict) -> None:  # type: ignore[type-arg]
    train, measured = int(per_model(args.train, model)), int(per_model(args.epochs, model))
    setup = prepare(config_for(args, model, train))
    grid = grid_of(args, model, setup.plan.num_units)
    counts = sorted({n for _, n in grid} | set(micro_batch_choices(args.batch_size)))
    plans = [with_choices(setup.plan, [choice] * args.devices) for choice in grid]
    twice = plans * 2 if args.remeasure else plans   # the second copies: every configuration measured again
    profiles, emulations = measured_in_turns(args, model, setup, counts, twice, measured, 2 if args.remeasure else 1)
    profile = profiles[0]
    emulated: dict[tuple[str, str], dict[tuple[int, int], float]] = {}
    for i, (choice, plan) in enumerate(zip(grid, plans)):
        for net, speeds in itertools.product(NETWORKS, SPEEDS):
            netplan = with_network(plan, net, speeds)
            emulated_s = replayed_epoch_s(emulations[i], netplan, profile, check=(net, speeds) == (NETWORKS[0], "1,1"))
            predicted_s = predict_epoch(netplan, node_profiles(netplan.topology, profile), 1).time_s
            emulated.setdefault((net, speeds), {})[choice] = emulated_s
            row = {"model": model, "network": net, "device_speed": speeds, "split": choice[0],
                   "micro_batches": choice[1], "samples": -(-args.batch_size // choice[1]),
                   "emulated_s": emulated_s, "predicted_s": predicted_s, "error": predicted_s / emulated_s - 1}
            if args.remeasure:
                again_s = replayed_epoch_s(emulations[len(plans) + i], netplan, profile)
                repredicted_s = predict_epoch(netplan, node_profiles(netplan.topology, profiles[1]), 1).time_s
                row |= {"remeasured_s": again_s, "remeasure_error": again_s / emulated_s - 1,
                        "reprofiled_s": repredicted_s, "reprofile_error": repredicted_s / predicted_s - 1}
            out["rows"].append(row)
    errors = [abs(float(r["error"])) for r in out["rows"] if r["model"] == model]
    mine = [r for r in out["rows"] if r["model"] == model]
    again, reprofiled = magnitudes(mine, "remeasure_error"), magnitudes(mine, "reprofile_error")
    log(f"{model}: {len(grid)} configurations; error mean {statistics.mean(errors):.2%}, worst {max(errors):.2%}"
        + (f"; measured again: mean {statistics.mean(again):.2%}, worst {max(again):.2%}; predicted from a second "
           f"profile: mean {statistics.mean(reprofiled):.2%}, worst {max(reprofiled):.2%}" if again else ""))
    if args.choice:
        for net in NETWORKS:
            out["choice"].append(check_choice(args, model, setup, profile, counts, emulated[(net, CHOICE_SPEEDS)],
                                              net, measured))


def check_choice(args, model, setup, profile, counts, emulated, net, measured) -> dict[str, object]:  # type: ignore[no-untyped-def]
    """The planner's common and per-device choice and the paper's rule against the sweep's best."""
    plan = with_network(setup.plan, net, CHOICE_SPEEDS)
    profiles = node_profiles(plan.topology, profile)
    started = time.perf_counter()
    common = choose_split(plan, profiles, micro_batches=counts, per_device=False)
    own = choose_split(plan, profiles, micro_batches=counts, per_device=True)
    search_s = time.perf_counter() - started
    paper = paper_choice(profile, profile, plan, plan.owners[0])  # the slowest device
    best = min(emulated, key=emulated.get)

    def timed(choice: tuple[int, int]) -> float:  # outside the (reduced) grid: train it
        if choice not in emulated:
            chosen = with_network(with_choices(setup.plan, [choice] * args.devices), net, CHOICE_SPEEDS)
            emulated[choice] = statistics.median(epoch_time(s) for s, _ in emulate_epochs(setup, chosen, measured))
        return emulated[choice]

    row = {"model": model, "network": net, "sweep_best": _c(best), "best_s": emulated[best],
           "planner": _c(common.common), "planner_s": timed(common.common),
           "gap": timed(common.common) / emulated[best] - 1}
    if own.per_device:
        own_s = statistics.median(epoch_time(spans) for spans, _ in emulate_epochs(setup, own.plan, measured))
        row |= {"per_device": "/".join(_c(c) for c in zip(own.splits, own.micro_batches)),
                "per_device_s": own_s, "per_device_gap": own_s / emulated[best] - 1}
    else:
        row |= {"per_device": "(same)", "per_device_s": row["planner_s"], "per_device_gap": row["gap"]}
    row |= {"paper_rule": _c(paper), "paper_s": timed(paper), "paper_gap": timed(paper) / emulated[best] - 1,
            "search_s": search_s}
    return row


def magnitudes(rows: list[dict[str, object]], key: str) -> list[float]:
    """|rows' `key`| where they have it (the --remeasure figures)."""
    return [abs(float(r[key])) for r in rows if key in r]  # type: ignore[arg-type]


def summary(rows: list[dict[str, object]]) -> list[dict[str, object]]:
    """Mean and worst absolute error per model and network, and the signed mean (bias)."""
    out = []
    keys = dict.fromkeys((r["model"], r["network"]) for r in rows)
    for model, net in keys:
        errors = [float(r["error"]) for r in rows if (r["model"], r["network"]) == (model, net)]  # type: ignore[arg-type]
        mine = [r for r in rows if (r["model"], r["network"]) == (model, net)]
        again, reprofiled = magnitudes(mine, "remeasure_error"), magnitudes(mine, "reprofile_error")
        out.append({"model": model, "network": net, "configs": len(errors),
                    "mean_abs_err": statistics.mean(abs(e) for e in errors),
                    "worst_abs_err": max(abs(e) for e in errors), "mean_err": statistics.mean(errors)}
                   | ({"remeasure_mean": statistics.mean(again), "remeasure_worst": max(again),
                       "reprofile_mean": statistics.mean(reprofiled), "reprofile_worst": max(reprofiled)}
                      if again else {}))
    return out


def log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _c(choice: tuple[int, int]) -> str:
    return f"s{choice[0]} N{choice[1]}"


def ilp(args: argparse.Namespace, model: str) -> list[dict[str, object]]:
    config = RunConfig(technique="mpsl", model=model, dataset=f"synthetic:train_size={args.owners * 128},test_size=8",
                       devices=args.owners, compute_nodes=5, batch_size=128, micro_batches=1, progress=False)
    setup = prepare(config)
    plan = setup.plan
    started = time.perf_counter()
    profile = measure_profile(copy.deepcopy(setup.model), (3, 32, 32), [8], name=model, repeats=1, warmup=1)
    log(f"{model}: profiled at batch 8 (scaled to 128) in {time.perf_counter() - started:.1f} s")
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


QUICK = {"models": "vgg5,resnet18,mobilenet_v3_small", "splits": "three", "micro_batches": "1/4/8",
         "train": "vgg5=192,resnet18=64,mobilenet_v3_small=64", "epochs": "vgg5=3,resnet18=2,mobilenet_v3_small=2",
         "ilp_models": ""}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="vgg5,resnet18,mobilenet_v3_small")
    parser.add_argument("--splits", default="vgg5=all;resnet18=all;mobilenet_v3_small=every2",
                        help="per model: all, three (first, middle, last), everyK or a list 1/3/5")
    parser.add_argument("--micro-batches", default="vgg5=1/2/4/8/16;resnet18=1/2/4/8/16;mobilenet_v3_small=1/2/4/8",
                        help="micro-batch counts per model (16 of a batch of 16: 1 sample; MobileNetV3's "
                             "BatchNorm on a 1x1 map needs 2)")
    parser.add_argument("--ilp-models", default="vgg19,resnet101")
    parser.add_argument("--devices", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--train", default="vgg5=192,resnet18=64,mobilenet_v3_small=64",
                        help="training samples of all devices together, per model: short epochs")
    parser.add_argument("--epochs", default="vgg5=3,resnet18=2,mobilenet_v3_small=2",
                        help="measured epochs per configuration (after one warm-up), the median kept")
    parser.add_argument("--repeats", type=int, default=15, help="profile repeats per unit and size, over --rounds")
    parser.add_argument("--rounds", type=int, default=5,
                        help="interleaved profile rounds (every size and unit in each): a slow spell of the host "
                             "shorter than the profile then hits every size alike")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--owners", type=int, default=10)
    parser.add_argument("--ilp-repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--no-calibrate", dest="calibrate", action="store_false",
                        help="predict from the bare profile (no per-action overhead)")
    parser.add_argument("--no-fit", dest="fit", action="store_false",
                        help="keep the profile's median per size (no line through the sizes)")
    parser.add_argument("--no-choice", dest="choice", action="store_false",
                        help="skip the planner's-choice table (it trains the per-device plans too)")
    parser.add_argument("--quick", action="store_true",
                        help="a reduced grid in a few minutes, no choice table: " + " ".join(f"--{k.replace('_', '-')} {v or 'none'}"
                                                                            for k, v in QUICK.items()))
    parser.add_argument("--clock", choices=sorted(CLOCKS), default="wall",
                        help="wall: the emulator's measured timing as it is; cpu: every time (profile, calibration, "
                             "emulator) read from this thread's CPU time, which a loaded machine does not inflate")
    parser.add_argument("--remeasure", action="store_true",
                        help="emulate every configuration twice (separate executors, in the same passes) and profile "
                             "twice, and score the second measurement against the first and the prediction from the "
                             "second profile against the first's, as the prediction is scored: how far two "
                             "measurements of the same thing differ on this host (doubles the measuring time)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the tables")
    args = parser.parse_args()
    if args.quick:
        given = {a.split("=")[0] for a in sys.argv[1:]}
        for key, value in QUICK.items():
            if f"--{key.replace('_', '-')}" not in given:
                setattr(args, key, value)
        args.choice = False  # the choice table trains per-device plans besides the grid
    torch.set_num_threads(args.threads)
    global CLOCK
    CLOCK = args.clock
    started = time.perf_counter()
    out: dict[str, list[dict[str, object]]] = {"rows": [], "choice": []}
    for model in filter(None, args.models.split(",")):
        sweep(args, model, out)
    ilp_rows = [row for model in filter(None, args.ilp_models.split(",")) for row in ilp(args, model)]
    errors = [abs(float(r["error"])) for r in out["rows"]]  # type: ignore[arg-type]
    figures = {"mean_error": statistics.mean(errors) if errors else math.nan,
               "worst_error": max(errors) if errors else math.nan}
    again, reprofiled = magnitudes(out["rows"], "remeasure_error"), magnitudes(out["rows"], "reprofile_error")
    if again:   # the same score for a second measurement of every configuration, and of the profile: the host's floor
        figures |= {"remeasure_mean_error": statistics.mean(again), "remeasure_worst_error": max(again),
                    "reprofile_mean_error": statistics.mean(reprofiled), "reprofile_worst_error": max(reprofiled)}
    setting = (f"total {time.perf_counter() - started:.0f} s, torch threads {args.threads}, devices {args.devices} "
               f"(speeds {' | '.join(SPEEDS)}), batch {args.batch_size}, splits {args.splits}, micro-batches "
               f"{args.micro_batches}, train {args.train}, measured epochs {args.epochs}, clock {args.clock}")
    if args.json:
        print(json.dumps(figures | {"summary": summary(out["rows"]), "rows": out["rows"], "choice": out["choice"],
                                    "ilp": ilp_rows, "setting": setting}, indent=1))
        return
    print("\n## Predicted against emulated epoch time, per model and network (every row of the grid)\n")
    print(format_table(summary(out["rows"]), list(summary(out["rows"])[0])) if out["rows"] else "(no models)")
    print(f"\nover the grid: mean error {figures['mean_error']:.2%}, worst {figures['worst_error']:.2%} "
          f"({len(errors)} rows)")
    if again:
        print(f"a second measurement of the same configurations against the first: mean "
              f"{figures['remeasure_mean_error']:.2%}, worst {figures['remeasure_worst_error']:.2%}; the prediction "
              f"from a second profile against the first: mean {figures['reprofile_mean_error']:.2%}, "
              f"worst {figures['reprofile_worst_error']:.2%}")
    worst = sorted(out["rows"], key=lambda r: -abs(float(r["error"])))[:8]  # type: ignore[arg-type]
    print("\n### The largest errors\n")
    print(format_table(worst, list(worst[0])) if worst else "(none)")
    if out["choice"]:
        print(f"\n## Planner's choice against the sweep (emulated, measured timing, speeds {CHOICE_SPEEDS})\n")
        print(format_table(out["choice"], list(out["choice"][0])))
    if ilp_rows:
        print("\n## MP-SL ILP over 5 compute nodes (HiGHS via scipy.optimize.milp)\n")
        print(format_table(ilp_rows, list(ilp_rows[0])))
    print(f"\n{setting}")


if __name__ == "__main__":
    main()
