"""MP-SL's closed-form epoch estimate and the event predictor, against each other and against emulated runs.

    python bench/mpsl_estimator.py            # predicted table (committed profiles) + short emulated runs
    python bench/mpsl_estimator.py --no-runs  # the predicted table only (seconds)

The paper (EdgeSys'25) reports its closed form within 3.14% (ResNet-101) and 3.86% (VGG-19)
of measured epochs, up to 50 owners. Here:

1. **Predicted**: on the profiles committed under configs/papers/profiles/ (bench/paper_profiles.py),
   MP-SL's setting (configs/papers/mpsl.toml: batch 128, 8 Mbit/s owners at 0.1, compute nodes
   at 1 linked at 7 Gbit/s, CIFAR-10's 50,000 samples split among K owners, 3 compute nodes,
   the ILP's cuts): the closed form against the event predictor for K = 5..50. The event
   predictor is what the emulator's profile timing plays out (equal to 1e-12, tests/planner).
2. **Emulated**: short runs of the emulator in measured timing (real PyTorch on this host,
   each compute action's host time / its node's speed) of VGG-19, 3 compute nodes, batch 16,
   2 mini-batches per owner; both estimates read a profile measured just before, on the same
   host under the same load, and are set against the run's epoch. Kept short: this host has
   2 shared cores.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from splitpipe.config import RunConfig  # noqa: E402
from splitpipe.engine.predict import node_profiles, predict_epoch  # noqa: E402
from splitpipe.experiment import emulate  # noqa: E402
from splitpipe.planner import solve_mpsl_cuts  # noqa: E402
from splitpipe.planner.choose import mpsl_costs  # noqa: E402
from splitpipe.planner.estimate import estimate_epoch_s  # noqa: E402
from splitpipe.planner.mpsl_cost import closed_form_epoch  # noqa: E402
from splitpipe.profile import Profile, measure_profile  # noqa: E402
from splitpipe.report import format_table  # noqa: E402
from splitpipe.setup import prepare  # noqa: E402

PROFILES = Path(__file__).resolve().parents[1] / "configs" / "papers" / "profiles"
PAPER = {"vgg19": "3.86%", "resnet101": "3.14%"}


def mpsl_config(model: str, owners: int, batch: int, **changes: object) -> RunConfig:
    base = RunConfig(technique="mpsl", model=model, devices=owners, compute_nodes=3, batch_size=batch,
                     micro_batches=1, network=("8/8/10",), device_speed=(0.1,), server_speed=1.0,
                     weight_decay=1e-4, progress=False,
                     dataset=f"synthetic:train_size={owners * batch},test_size=8,image_size=32")
    return base.with_(**changes)


def ilp_plan(config: RunConfig, profile: Profile, samples: int):  # type: ignore[no-untyped-def]
    plan = prepare(config).plan
    plan = replace(plan, shard_sizes=(samples,) * len(plan.owners))
    forward, backward, memory = mpsl_costs(plan, node_profiles(plan.topology, profile))
    solution = solve_mpsl_cuts(forward, backward, memory, None, owners=len(plan.owners), first_cut=1,
                               last_cut=plan.num_units - 1)
    return replace(plan, cuts=solution.cuts)


def predicted_rows() -> list[dict[str, object]]:
    rows = []
    for model in ("vgg19", "resnet101"):
        path = PROFILES / f"{model}.json"
        if not path.is_file():
            print(f"skipping {model}: no committed profile {path}", flush=True)
            continue
        profile = Profile.load(path)
        for owners in (5, 10, 20, 50):
            plan = ilp_plan(mpsl_config(model, owners, 128), profile, 50_000 // owners)
            profiles = node_profiles(plan.topology, profile)
            events = estimate_epoch_s(plan, profiles)
            closed = closed_form_epoch(plan, profiles).time_s
            rows.append({"model": model, "owners": owners, "cuts": ",".join(map(str, plan.cuts)),
                         "events_s": f"{events:.0f}", "closed_form_s": f"{closed:.0f}",
                         "closed_vs_events": f"{closed / events - 1:+.1%}", "paper (vs measured)": PAPER[model]})
    return rows


def emulated_rows(owners_list: tuple[int, ...]) -> list[dict[str, object]]:
    rows = []
    batch, steps = 16, 2
    torch.manual_seed(0)
    config = mpsl_config("vgg19", max(owners_list), batch, device_speed=(1.0,), timing="measured", epochs=1,
                         cuts=(1, 6, 11, 24))
    setup = prepare(config)
    profile = measure_profile(setup.model, (3, 32, 32), (batch,), name="vgg19", repeats=2, warmup=1)
    for owners in owners_list:
        run = config.with_(devices=owners,
                           dataset=f"synthetic:train_size={owners * batch * steps},test_size=8,image_size=32")
        setup = prepare(run)
        profiles = node_profiles(setup.plan.topology, profile)
        events = predict_epoch(setup.plan, profiles).time_s
        closed = closed_form_epoch(setup.plan, profiles).time_s
        started = time.perf_counter()
        measured = float(emulate(setup).report["epochs"][0]["time_s"])
        rows.append({"model": "vgg19", "owners": owners, "cuts": ",".join(map(str, setup.plan.cuts)),
                     "emulated_s": f"{measured:.1f}", "events_s": f"{events:.1f}", "closed_form_s": f"{closed:.1f}",
                     "events_vs_emulated": f"{events / measured - 1:+.1%}",
                     "closed_vs_emulated": f"{closed / measured - 1:+.1%}",
                     "host_s": f"{time.perf_counter() - started:.0f}"})
        print(f"emulated {owners} owners", flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-runs", action="store_true", help="the predicted table only")
    parser.add_argument("--owners", default="2,4", help="owners of the emulated runs (comma-separated)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    started = time.perf_counter()
    predicted = predicted_rows()
    print(format_table(predicted, ["model", "owners", "cuts", "events_s", "closed_form_s", "closed_vs_events",
                                   "paper (vs measured)"]), flush=True)
    if not args.no_runs:
        emulated = emulated_rows(tuple(int(k) for k in args.owners.split(",")))
        print(format_table(emulated, ["model", "owners", "cuts", "emulated_s", "events_s", "closed_form_s",
                                      "events_vs_emulated", "closed_vs_emulated", "host_s"]))
    print(f"\n{time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
