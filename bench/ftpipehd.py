"""Benchmark (FTPipeHD issue): the DP's partition against an equal one, and training through failed workers.

    python bench/ftpipehd.py [--out DIR]

(a) VGG-5 on digits, central node at speed 1 and 3 workers whose capacities spread 10x
    (1, 0.32, 0.1): even cuts (each stage the same number of units, as if the devices were
    equal) against the min-max DP's cuts from the profile and the speeds; one epoch each.
(c) The same model, 4 stages at speed 1, 3 epochs: no failure, one worker failed, two
    (adjacent) failed; epoch times (the redone work stays on the clock) and final accuracy.

Timing is `profile` from tests/golden_reports/profile_vgg5_digits.json (fixed per-unit times),
so the figures are reproducible; the training itself is real.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch

from splitpipe.config import RunConfig
from splitpipe.experiment import emulate, prepare
from splitpipe.report import write_run
from splitpipe.schedules.ftpipehd_replan import add_costs, dp_cuts
from splitpipe.setup import setup_profiles

PROFILE = str(Path(__file__).parents[1] / "tests" / "golden_reports" / "profile_vgg5_digits.json")
BASE = RunConfig(technique="ftpipehd", dataset="digits", model="vgg5", batch_size=32, micro_batches=4,
                 timing="profile", profile=PROFILE, progress=False, replicate_every=10, replicate_central_every=20)
SPREAD = (1.0, 1.0, 0.32, 0.1)


def markdown(rows: Sequence[Mapping[str, object]]) -> str:
    columns = list(rows[0])
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    for row in rows:
        lines.append("| " + " | ".join(f"{v:.4g}" if isinstance(v, float) else str(v) for v in row.values()) + " |")
    return "\n".join(lines)


def run(config: RunConfig, out: Path | None, name: str) -> dict:
    result = emulate(prepare(config))
    if out is not None:
        write_run(out / name, result.report, result.spans)
    return result.report


def partition_table(out: Path | None) -> list[dict[str, object]]:
    config = BASE.with_(stage_speeds=SPREAD, epochs=1)
    setup = prepare(config)
    best = dp_cuts(add_costs(setup.plan, setup_profiles(setup)))
    rows = []
    for name, cuts in (("equal", setup.plan.cuts), ("DP", best)):
        epoch = run(config.with_(cuts=tuple(cuts)), out, f"partition-{name}")["epochs"][0]
        rows.append({"partition": name, "cuts": ",".join(map(str, cuts)), "epoch s": epoch["time_s"],
                     "bound s": epoch["bound_s"], "efficiency": epoch["efficiency"]})
    return rows


def failure_table(out: Path | None) -> list[dict[str, object]]:
    config = BASE.with_(stages=4, epochs=3)
    clean = run(config, out, "failed-0")
    epoch_s = clean["epochs"][0]["time_s"]
    cases = {"none": (), "worker2": (f"worker2@{0.5 * epoch_s}",),
             "worker1, worker2": (f"worker1@{0.5 * epoch_s}", f"worker2@{1.5 * epoch_s}")}
    rows = []
    for name, fail in cases.items():
        report = clean if not fail else run(config.with_(fail=fail), out, f"failed-{len(fail)}")
        rows.append({"failed": name, "when": ", ".join(fail) or "-",
                     "epoch s": " / ".join(f"{e['time_s']:.3g}" for e in report["epochs"]),
                     "final accuracy": report["epochs"][-1]["test_accuracy"]})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help="write report.json and timelines here")
    args = parser.parse_args()
    torch.set_num_threads(1)
    print("(a) partition, stage speeds " + ",".join(map(str, SPREAD)))
    print(markdown(partition_table(args.out)))
    print("\n(c) failed workers")
    print(markdown(failure_table(args.out)))


if __name__ == "__main__":
    main()
