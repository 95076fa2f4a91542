"""Benchmark (issue 10): real runs that lose one device at a random moment, against failure-free ones.

    python bench/faults.py --runs 5 --out docs/bench-faults
    python bench/faults.py --runs 20 --techniques pipelearn mpsl ftpipehd     # what the issue asks

For each technique (PipeLearn, MP-SL, FTPipeHD), one failure-free `splitpipe launch` and `--runs`
launches in which this script SIGKILLs one random device's (FTPipeHD: worker's) process at a random
moment of a random epoch (it watches the launch's log for "NODE: epoch E started", then waits up
to 0.4 s).
Data: 240 learnable 8x8 images of 10 classes (192 train, 48 test), 4 devices, loopback, no link
shaping. The table: runs that finished (exit 0) of all, the epochs and mini-batch steps redone
(each failure redoes the epoch it struck, every owner's steps), and the final test accuracy of
the runs with a failure against the failure-free run.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from splitpipe.config import RunConfig
from splitpipe.plan import steps_per_epoch
from splitpipe.report import format_table
from splitpipe.setup import prepare

COLUMNS = ["technique", "finished", "epochs_redone", "steps_redone", "accuracy", "failure_free_accuracy"]
SHAPES: dict[str, dict[str, object]] = {"pipelearn": {"devices": 4, "micro_batches": 4},
                                         "mpsl": {"devices": 4, "micro_batches": 2},
                                         "ftpipehd": {"stages": 4, "micro_batches": 2, "repartition_every": 0,
                                                      "replicate_every": 4, "replicate_central_every": 8}}
#: Roles whose processes the benchmark kills.
VICTIM_ROLES = ("device", "worker")


def tiny_npz(folder: Path) -> str:
    rng = np.random.default_rng(0)
    y = np.arange(240) % 10
    x = (rng.normal(size=(10, 8, 8))[y] + rng.normal(size=(240, 8, 8))).astype(np.float32)
    np.savez(folder / "tiny.npz", x=x, y=y)
    return str(folder / "tiny.npz")


def config(technique: str, data: str, epochs: int) -> RunConfig:
    return RunConfig(technique=technique, dataset=f"npz:{data}", network="none", epochs=epochs,
                     batch_size=16, progress=False, **SHAPES[technique])  # type: ignore[arg-type]


def one_run(path: Path, out: Path, epochs: int, rng: random.Random | None,
            victims: list[str]) -> tuple[int, dict]:
    """A launch; with `rng`, one random node of `victims` killed at a random moment. Exit code and report."""
    if rng is None:
        return launched(path, out, {}, timeout_s=900)
    victim, epoch = rng.choice(victims), rng.randrange(1, epochs - 1)
    return launched(path, out, {victim: (epoch, rng.uniform(0, 0.4))}, timeout_s=900)


def launched(path: Path, out: Path, kills: Mapping[str, tuple[int, float]], timeout_s: float) -> tuple[int, dict]:
    """A launch of `path`; each node of `kills` SIGKILLed `delay` s after its epoch `epoch` started
    (`kills[node] = (epoch, delay)`). Exit code and report ({} if none was written)."""
    process = subprocess.Popen([sys.executable, "-m", "splitpipe", "launch", str(path), "--out", str(out),
                                "--no-progress", "--threads", "1", "--timeout", "120"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    pids: dict[str, int] = {}

    def watch() -> None:
        assert process.stderr is not None
        for line in process.stderr:
            started = re.search(r"started (\w+) \(pid (\d+)\)", line)
            if started:
                pids[started.group(1)] = int(started.group(2))
            for node, (epoch, delay) in kills.items():
                if f"{node}: epoch {epoch} started" in line and node in pids:
                    time.sleep(delay)
                    os.kill(pids.pop(node), signal.SIGKILL)

    threading.Thread(target=watch, daemon=True).start()
    code = process.wait(timeout=timeout_s)
    report = json.loads((out / "report.json").read_text()) if (out / "report.json").exists() else {}
    return code, report


def bench(technique: str, runs: int, epochs: int, seed: int, work: Path) -> dict[str, object]:
    data = tiny_npz(work)
    run_config = config(technique, data, epochs)
    path = work / f"{technique}.toml"
    path.write_text(run_config.to_toml())
    plan = prepare(run_config).plan
    steps = max(steps_per_epoch(n, plan.batch_size) for n in plan.shard_sizes) * len(plan.owners)
    victims = [n.name for n in plan.topology.nodes if n.role in VICTIM_ROLES]
    _, free = one_run(path, work / f"{technique}-free", epochs, None, victims)
    rng = random.Random(seed)
    finished, redone, accuracy = 0, 0, []
    for i in range(runs):
        code, report = one_run(path, work / f"{technique}-{i}", epochs, rng, victims)
        finished += code == 0
        redone += sum(e["event"] == "failure" for e in report.get("events", []))
        if code == 0:
            accuracy.append(report["epochs"][-1]["test_accuracy"])
        print(f"{technique} run {i}: exit {code}, events {report.get('events')}", file=sys.stderr)
    return {"technique": technique, "finished": f"{finished}/{runs}", "epochs_redone": redone,
            "steps_redone": redone * steps,
            "accuracy": f"{np.mean(accuracy):.3f}" if accuracy else "-",
            "failure_free_accuracy": f"{free['epochs'][-1]['test_accuracy']:.3f}" if free else "-"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20, help="runs with a failure per technique (the issue: 20)")
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--techniques", nargs="+", default=["pipelearn", "mpsl", "ftpipehd"])
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="splitpipe-faults-") as tmp:
        rows = [bench(t, args.runs, args.epochs, args.seed, Path(tmp)) for t in args.techniques]
    table = format_table(rows, COLUMNS)
    print(table)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "faults.md").write_text(table + "\n")
        (args.out / "faults.json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
