"""Benchmark (issue 9, detection): how soon a real run finds a stalled worker, and that a slow one is kept.

    python bench/stall.py --runs 3

Real FTPipeHD launches (central node and 2 workers, 240 learnable 8x8 images, loopback, `--silence
120` so that silence cannot be what finds a node):
- stalled: this script SIGSTOPs worker2 as its epoch 1 starts (its connections stay open, its
  heartbeats stop) and times the coordinator's decision ("epoch 1 is redone without worker2")
  from the SIGSTOP; then SIGKILLs it. The backward timeout and a liveness poll should find it.
- slow: worker2 drops to 1/`--slow-factor` of its speed from `--slow-at` seconds on
  (`--speed-change`, `--emulate-speed`): its neighbours wait far past twice their average batch
  time, poll it, get answers; no failure should be recorded.
The table: runs that finished (exit 0), failure events and how they were detected, the seconds
from SIGSTOP to the decision (median and max), the runs in which a node logged worker2 slow but
answering a poll, and each run's epoch wall times.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from splitpipe.config import RunConfig
from splitpipe.report import format_table

sys.path.insert(0, str(Path(__file__).resolve().parent))
from faults import tiny_npz  # noqa: E402

COLUMNS = ["case", "finished", "failures", "detected", "decision_s_median", "decision_s_max", "polled_slow",
           "epoch_s"]


def config(data: str, epochs: int, slow_at: float | None, factor: float) -> RunConfig:
    changes = {"speed_change": (f"worker2@{slow_at:g}={1 / factor:g}",)} if slow_at is not None else {}
    return RunConfig(technique="ftpipehd", dataset=f"npz:{data}", network="none", epochs=epochs, batch_size=16,
                     progress=False, stages=3, micro_batches=2, repartition_every=0, replicate_every=2,
                     replicate_central_every=4, checkpoint_every=0).with_(**changes)


def one_run(path: Path, out: Path, stall: bool, slow: bool) -> tuple[int, dict, float | None]:
    """A launch; with `stall`, worker2 SIGSTOPped as epoch 1 starts. Exit code, report, seconds to the decision."""
    flags = ["--emulate-speed"] if slow else []
    process = subprocess.Popen([sys.executable, "-m", "splitpipe", "launch", str(path), "--out", str(out),
                                "--no-progress", "--threads", "1", "--timeout", "300", "--silence", "120", *flags],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    pids: dict[str, int] = {}
    stopped: list[float] = []
    decided: list[float] = []
    slow_lines: list[str] = []

    def watch() -> None:
        assert process.stderr is not None
        for line in process.stderr:
            if " started worker2 (pid " in line:
                pids["worker2"] = int(line.rsplit("(pid ", 1)[1].split(")")[0])
            if stall and "worker2: epoch 1 started" in line and not stopped:
                os.kill(pids["worker2"], signal.SIGSTOP)
                stopped.append(time.monotonic())
            if "from worker2" in line and "slow, not dead" in line:
                slow_lines.append(line)
            if stopped and not decided and "is redone without worker2" in line:
                decided.append(time.monotonic())
                os.kill(pids["worker2"], signal.SIGKILL)

    threading.Thread(target=watch, daemon=True).start()
    try:
        code = process.wait(timeout=900)
    finally:
        if stopped and not decided:
            os.kill(pids["worker2"], signal.SIGKILL)
    report = json.loads((out / "report.json").read_text()) if (out / "report.json").exists() else {}
    report["slow_lines"] = len(slow_lines)
    return code, report, decided[0] - stopped[0] if decided and stopped else None


def bench(case: str, runs: int, epochs: int, slow_at: float, factor: float, work: Path) -> dict[str, object]:
    slow = case == "slow"
    path = work / f"{case}.toml"
    path.write_text(config(tiny_npz(work), epochs, slow_at if slow else None, factor).to_toml())
    finished, failures, detected, seconds, polled, epochs_s = 0, 0, [], [], 0, []
    for i in range(runs):
        code, report, decision = one_run(path, work / f"{case}-{i}", case == "stalled", slow)
        finished += code == 0
        events = [e for e in report.get("events", []) if e["event"] == "failure"]
        failures += len(events)
        detected += [str(e.get("detected")) for e in events]
        seconds += [decision] if decision is not None else []
        polled += report["slow_lines"] > 0
        epochs_s.append("/".join(f"{row['wall_s']:.1f}" for row in report.get("epochs", [])))
        print(f"{case} run {i}: exit {code}, decision {decision}, events {report.get('events')}", file=sys.stderr)
    kinds = ", ".join(f"{k}: {detected.count(k)}" for k in sorted(set(detected))) or "-"
    return {"case": case, "finished": f"{finished}/{runs}", "failures": failures, "detected": kinds,
            "decision_s_median": f"{statistics.median(seconds):.1f}" if seconds else "-",
            "decision_s_max": f"{max(seconds):.1f}" if seconds else "-", "polled_slow": f"{polled}/{runs}",
            "epoch_s": " ".join(epochs_s)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--slow-at", type=float, default=15.0, help="wall seconds after training starts when worker2 slows")
    parser.add_argument("--slow-factor", type=float, default=1000.0, help="how many times slower worker2 gets")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="splitpipe-stall-") as tmp:
        rows = [bench(case, args.runs, args.epochs, args.slow_at, args.slow_factor, Path(tmp))
                for case in ("stalled", "slow")]
    print(format_table(rows, COLUMNS))


if __name__ == "__main__":
    main()
