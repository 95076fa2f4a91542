"""MP-SL's closed-form epoch estimate and the event predictor, against each other and against emulated runs.

    python bench/mpsl_estimator.py            # predicted table (committed profiles) + short emulated and real runs
    python bench/mpsl_estimator.py --no-real  # no `splitpipe launch`
    python bench/mpsl_estimator.py --no-runs  # the predicted table only (seconds)

The paper (EdgeSys'25) reports its closed form within 3.14% (ResNet-101) and 3.86% (VGG-19)
of measured epochs, up to 50 owners. Here:

1. **Predicted**: on the profiles committed under configs/papers/profiles/ (bench/paper_profiles.py),
   MP-SL's setting (configs/papers/mpsl.toml: batch 128, 8 Mbit/s owners at 0.1, compute nodes
   at 1 linked at 7 Gbit/s, CIFAR-10's 50,000 samples split among K owners, 3 compute nodes,
   the ILP's cuts): the closed form against the event predictor for K = 5..50. The event
   predictor is what the emulator's profile timing plays out (equal to 1e-12, tests/planner).
2. **Emulated and real**: VGG-19, 3 compute nodes, batch 16, 2 mini-batches per owner, owners
   and compute nodes at this host's speed, on the paper's 8 Mbit/s owner links and on WiFi;
   2 epochs of the emulator in measured timing (real PyTorch, each compute action's host
   time) and of `splitpipe launch` (one process per node on loopback, links shaped in their
   senders), each set against its second, steady epoch. Both estimates read the profile the
   emulator predicts with: this host's, measured and calibrated once in this process
   (planner/calibrate.py), so that the estimates and the runs share their unit costs. A real
   run has no profile timing, so its wall clock is the truth here. Kept short: this host has
   2 shared cores, on which a launched cluster's nodes also contend with each other.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
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
from splitpipe.profile import Profile  # noqa: E402
from splitpipe.report import format_table  # noqa: E402
from splitpipe.runtime.launcher import launch  # noqa: E402
from splitpipe.setup import prepare, setup_profiles  # noqa: E402

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


def ground_truth_rows(owners_list: tuple[int, ...], networks: tuple[str, ...], real: bool) -> list[dict[str, object]]:
    """Both estimates against an emulated run (measured timing) and, with `real`, a launched one,
    each of 2 epochs, set against the second: the steady state, past the first iteration's
    allocations and the optimizer's first step. Both estimates read the profile the emulator
    itself predicts with (this host's, measured and calibrated once per process: setup_profiles)."""
    rows = []
    batch, steps = 16, 2
    for network in networks:
        for owners in owners_list:
            torch.manual_seed(0)
            config = mpsl_config("vgg19", owners, batch, device_speed=(1.0,), timing="measured", epochs=2,
                                 cuts=(1, 6, 11, 24), network=(network,),
                                 dataset=f"synthetic:train_size={owners * batch * steps},test_size=8,image_size=32")
            setup = prepare(config)
            profiles = setup_profiles(setup)
            events = predict_epoch(setup.plan, profiles, 1).time_s
            closed = closed_form_epoch(setup.plan, profiles, 1).time_s
            started = time.perf_counter()
            emulated_row = emulate(setup).report["epochs"][1]
            emulated = float(emulated_row["time_s"])
            row: dict[str, object] = {
                "owners": owners, "links": network, "cuts": ",".join(map(str, setup.plan.cuts)),
                "closed_form_s": f"{closed:.1f}", "events_s": f"{events:.1f}", "emulated_s": f"{emulated:.1f}",
                "closed_vs_emulated": f"{closed / emulated - 1:+.1%}", "events_vs_emulated": f"{events / emulated - 1:+.1%}",
                "busiest_compute_s": f"{busiest(emulated_row, setup.plan.chain):.1f}"}
            if real:
                real_row = launched_epoch(config)
                measured = float(real_row["time_s"])
                row["busiest_compute_s"] = f"{row['busiest_compute_s']} / {busiest(real_row, setup.plan.chain):.1f}"
                row |= {"real_s": f"{measured:.1f}", "closed_vs_real": f"{closed / measured - 1:+.1%}",
                        "events_vs_real": f"{events / measured - 1:+.1%}",
                        "emulated_vs_real": f"{emulated / measured - 1:+.1%}"}
            rows.append(row | {"host_s": f"{time.perf_counter() - started:.0f}"})
            print(f"ran {owners} owners on {network}", flush=True)
    return rows


def launched_epoch(config: RunConfig) -> dict[str, object]:
    """The second epoch's report row of `config` run by `splitpipe launch` on loopback: one process per
    node, one torch thread each (as the emulator's actions get here), links shaped in their senders."""
    with tempfile.TemporaryDirectory(prefix="mpsl-estimator-") as out:
        launch(config.with_(out=out), timeout=900, threads=1)
        return dict(json.loads((Path(out) / "report.json").read_text())["epochs"][1])


def busiest(row: dict[str, object], chain: tuple[str, ...]) -> float:
    """The busiest compute node's busy seconds in an epoch's report row: the same work, so a
    longer figure in the real run is its actions running slower (nodes sharing this host's cores)."""
    busy = row["busy_s"]
    assert isinstance(busy, dict)
    return max(float(busy[node]) for node in chain)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-runs", action="store_true", help="the predicted table only")
    parser.add_argument("--owners", default="4", help="owners of the emulated and real runs (comma-separated)")
    parser.add_argument("--networks", default="8/8/10,wifi",
                        help="the owners' links in those runs (comma-separated; the paper's: 8/8/10)")
    parser.add_argument("--runs-only", action="store_true", help="the runs only, not the predicted table")
    parser.add_argument("--no-real", action="store_true", help="emulated runs only, no `splitpipe launch`")
    args = parser.parse_args()
    torch.set_num_threads(1)
    started = time.perf_counter()
    if not args.runs_only:
        predicted = predicted_rows()
        print(format_table(predicted, ["model", "owners", "cuts", "events_s", "closed_form_s", "closed_vs_events",
                                       "paper (vs measured)"]), flush=True)
    if not args.no_runs:
        rows = ground_truth_rows(tuple(int(k) for k in args.owners.split(",")), tuple(args.networks.split(",")),
                                 not args.no_real)
        columns = ["owners", "links", "cuts", "closed_form_s", "events_s", "emulated_s", "real_s",
                   "closed_vs_emulated", "events_vs_emulated", "closed_vs_real", "events_vs_real",
                   "emulated_vs_real", "busiest_compute_s", "host_s"]
        print(format_table(rows, [c for c in columns if c in rows[0]]))
    print(f"\n{time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
