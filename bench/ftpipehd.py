"""Benchmark (FTPipeHD issue): the DP's partition, re-partition after a slow-down, failed workers, replication.

    python bench/ftpipehd.py [--out DIR] [--parts abcd] [--network 4g]

(a) VGG-5 on digits, central node at speed 1 and 3 workers whose capacities spread 10x
    (1, 0.32, 0.1): even cuts (each stage the same number of units, as if the devices were
    equal) against the min-max DP's cuts from the profile and the speeds; one epoch each, with
    the sync and the async pipeline.
(b) 3 stages at speed 1, 3 epochs; worker1 drops from 1 to 0.1 a third of the way through:
    dynamic re-partition (every 10 iterations) against static cuts; time to finish.
(c) The same model, 4 stages at speed 1, 3 epochs: no failure, one worker failed, two
    (adjacent) failed; epoch times (the redone work stays on the clock) and final accuracy.
(r) (c) as real runs (`splitpipe launch`, loopback, measured timing): the script SIGKILLs the
    workers' processes mid-epoch; wall epoch times, the report's events, final accuracy.
(s) (b) as real runs: worker1 drops to 0.1 mid-training (--speed-change, wall seconds from
    training's start: about half way through epoch 1 of the run without a drop); static cuts against
    re-partitioning every 10 iterations.
(d) 4 stages, 2 epochs, copies every 5, 20 or 100 iterations (central: twice that) or never:
    the epoch time and link bytes they cost, and the time lost when worker2 dies late in epoch 0.

Timing is `profile` from tests/golden_reports/profile_vgg5_digits.json (fixed per-unit times),
so the figures are reproducible; the training itself is real.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch

from splitpipe.config import RunConfig
from splitpipe.experiment import emulate, prepare
from splitpipe.report import write_run
from splitpipe.schedules.ftpipehd_replan import add_costs, dp_cuts
from splitpipe.setup import setup_profiles

sys.path.insert(0, str(Path(__file__).resolve().parent))
from faults import launched  # noqa: E402

PROFILE = str(Path(__file__).parents[1] / "tests" / "golden_reports" / "profile_vgg5_digits.json")
BASE = RunConfig(technique="ftpipehd", dataset="digits", model="vgg5", batch_size=32, micro_batches=4,
                 timing="profile", profile=PROFILE, progress=False, replicate_every=10, replicate_central_every=20,
                 repartition_every=0)
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
    for pipeline in ("sync", "async"):
        for name, cuts in (("equal", setup.plan.cuts), ("DP", best)):
            epoch = run(config.with_(cuts=tuple(cuts), pipeline=pipeline), out, f"partition-{pipeline}-{name}")["epochs"][0]
            rows.append({"pipeline": pipeline, "partition": name, "cuts": ",".join(map(str, cuts)),
                         "epoch s": epoch["time_s"], "bound s": epoch["bound_s"], "efficiency": epoch["efficiency"],
                         "accuracy": epoch["test_accuracy"]})
    return rows


def speed_drop_table(out: Path | None) -> list[dict[str, object]]:
    config = BASE.with_(stages=3, epochs=3)  # with 4 stages VGG-5's 5 units leave worker1 no lighter unit
    clean = run(config, out, "speed-clean")
    at = sum(e["time_s"] for e in clean["epochs"]) / 3
    rows = []
    for name, every in (("no drop", None), ("static", 0), ("dynamic", 10)):
        report = clean if every is None else run(config.with_(speed_change=(f"worker1@{at}=0.1",), repartition_every=every),
                                                 out, f"speed-{name}")
        cuts = [e["cuts_after"] for e in report.get("events", [])]
        rows.append({"run": name, "drop": "-" if every is None else f"worker1@{at:.3g}=0.1",
                     "epoch s": " / ".join(f"{e['time_s']:.3g}" for e in report["epochs"]),
                     "total s": sum(e["time_s"] for e in report["epochs"]),
                     "re-partitions": " -> ".join(",".join(map(str, c)) for c in cuts) or "-",
                     "final accuracy": report["epochs"][-1]["test_accuracy"]})
    return rows


def replication_table(out: Path | None) -> list[dict[str, object]]:
    config = BASE.with_(stages=4, epochs=2)
    rows = []
    base_s = None
    for every in (0, 100, 20, 5):
        copies = config.with_(replicate_every=every, replicate_central_every=2 * every)
        clean = run(copies, out, f"replicate-{every}")
        epoch_s = clean["epochs"][0]["time_s"]
        base_s = base_s or epoch_s
        failed = run(copies.with_(fail=(f"worker2@{0.9 * epoch_s}",)), out, f"replicate-{every}-failed")
        link_bytes = sum(v for e in clean["epochs"] for v in e["bytes"].values())
        rows.append({"copies every": every or "never", "epoch s": epoch_s, "overhead": f"{epoch_s / base_s - 1:.1%}",
                     "link MB": link_bytes / 1e6,
                     "lost s": sum(e["time_s"] for e in failed["epochs"]) - sum(e["time_s"] for e in clean["epochs"]),
                     "accuracy": clean["epochs"][-1]["test_accuracy"],
                     "accuracy, failed": failed["epochs"][-1]["test_accuracy"]})
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


def real_failure_table(out: Path | None) -> list[dict[str, object]]:
    """(c) again as real runs: `splitpipe launch`, a process per stage on loopback, no link shaping;
    this script SIGKILLs the workers' processes half a second into the epochs it names."""
    import tempfile

    config = BASE.with_(stages=4, epochs=3, network=("none",), timing="measured", profile=None, checkpoint_every=0)
    cases = {"none": {}, "worker2": {"worker2": 1}, "worker1, worker2": {"worker1": 1, "worker2": 2}}
    rows = []
    with tempfile.TemporaryDirectory(prefix="splitpipe-ftpipehd-") as tmp:
        path = Path(tmp) / "run.toml"
        path.write_text(config.to_toml())
        for i, (name, kills) in enumerate(cases.items()):
            folder = (out or Path(tmp)) / f"real-failed-{i}"
            code, report = launched(path, folder, {n: (e, 0.5) for n, e in kills.items()}, timeout_s=1800)
            rows.append({"failed": name, "killed in epoch": ", ".join(f"{n}: {e}" for n, e in kills.items()) or "-",
                         "exit": code, "epoch s": " / ".join(f"{e['time_s']:.3g}" for e in report.get("epochs", [])),
                         "events": " ".join(e["event"] for e in report.get("events", [])) or "-",
                         "final accuracy": report["epochs"][-1]["test_accuracy"] if report else "-"})
    return rows


def real_speed_drop_table(out: Path | None) -> list[dict[str, object]]:
    """(b) again as real runs: worker1 computes at 0.1 from T wall seconds after training's start,
    T about half way through epoch 1 of the run without a drop; static cuts against re-partitioning
    every 10 iterations (the DP weighs the profile's per-unit costs)."""
    import tempfile

    config = BASE.with_(stages=3, epochs=3, network=("none",), timing="measured", checkpoint_every=0)
    rows = []
    with tempfile.TemporaryDirectory(prefix="splitpipe-ftpipehd-") as tmp:
        at = 0.0
        for i, (name, every) in enumerate((("no drop", None), ("static", 0), ("dynamic", 10))):
            run_config = config.with_(repartition_every=every or 0)
            if every is not None:
                run_config = run_config.with_(speed_change=(f"worker1@{at:.3g}=0.1",))
            path = Path(tmp) / f"run-{i}.toml"
            path.write_text(run_config.to_toml())
            code, report = launched(path, (out or Path(tmp)) / f"real-speed-{i}", {}, timeout_s=1800)
            epochs = report.get("epochs", [])
            if every is None:
                if len(epochs) < 2:
                    raise RuntimeError(f"the run without a drop failed (exit {code}): no epoch 1 to place the drop in")
                at = _mid_epoch_1(epochs)
            cuts = [e["cuts_after"] for e in report.get("events", []) if e["event"] == "repartition"]
            rows.append({"run": name, "exit": code, "drop": "-" if every is None else f"worker1@{at:.3g}=0.1",
                         "epoch s": " / ".join(f"{e['time_s']:.3g}" for e in epochs),
                         "total s": sum(e["time_s"] for e in epochs),
                         "re-partitions": " -> ".join(",".join(map(str, c)) for c in cuts) or "-",
                         "final accuracy": epochs[-1]["test_accuracy"] if epochs else "-"})
    return rows


def _mid_epoch_1(epochs: Sequence[Mapping[str, object]]) -> float:
    """Seconds from training's start to about half way through epoch 1: epoch 0's wall seconds and
    half of epoch 1's (the coordinator's preparing and evaluating between them left out)."""
    def seconds(row: Mapping[str, object]) -> float:
        value = row.get("wall_s", row.get("time_s", 0.0))
        return float(value) if isinstance(value, (int, float)) else 0.0
    return seconds(epochs[0]) + seconds(epochs[1]) / 2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help="write report.json and timelines here")
    parser.add_argument("--parts", default="abcd", help="which tables: a, b, c, d; r, s: (c), (b) as real runs")
    parser.add_argument("--network", default="4g", help="every hop's network profile")
    args = parser.parse_args()
    global BASE
    BASE = BASE.with_(network=(args.network,))
    torch.set_num_threads(1)
    tables = {"a": ("partition, stage speeds " + ",".join(map(str, SPREAD)), partition_table),
              "b": ("worker1 slows from 1 to 0.1", speed_drop_table),
              "c": ("failed workers", failure_table),
              "d": ("replication period", replication_table),
              "r": ("failed workers, real runs (launch)", real_failure_table),
              "s": ("worker1 drops to 0.1 in epoch 1, real runs (launch)", real_speed_drop_table)}
    for part in args.parts:
        title, table = tables[part]
        print(f"\n({part}) {title}", flush=True)
        print(markdown(table(args.out)), flush=True)


if __name__ == "__main__":
    main()
