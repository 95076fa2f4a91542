"""Benchmark (issue 12): time and peak memory of `splitpipe launch` with many devices on this machine.

    python bench/load.py --devices 16,32,64 --out docs/bench-load

Each row is one `splitpipe launch --technique pipelearn --model vgg5 --dataset digits --network lan
--batch-size 16 --epochs 1` (64 owners of digits' 1437 training images hold 22 each, so the
default batch of 32 does not fit), run as a child process. Peak memory is the largest sum of
the resident sets of the launcher and every process under it, sampled every 0.2 s from /proc.
Without `--processes` the launcher decides: one process per node up to 16 nodes, else 16
processes, the coordinator alone in one. A failed launch's stderr is kept in OUT/launch-N.log.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from splitpipe.report import format_table

COLUMNS = ["devices", "processes", "finished", "wall_s", "epoch_s", "peak_mb", "mb_per_node", "accuracy"]


def tree_rss_mb(root: int) -> float:
    """Resident MB of `root` and all its descendants, from /proc."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            status = Path(f"/proc/{entry}/status").read_text()
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        pid, ppid = int(entry), int(fields.get("PPid", "0").strip() or 0)
        children.setdefault(ppid, []).append(pid)
        rss[pid] = int(fields.get("VmRSS", "0 kB").split()[0])
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        total += rss.get(pid, 0)
        todo += children.get(pid, [])
    return total / 1024


def one_launch(devices: int, processes: int | None, out: Path, timeout: float, logs: Path | None) -> dict[str, object]:
    command = [sys.executable, "-m", "splitpipe", "launch", "--technique", "pipelearn", "--model", "vgg5",
               "--dataset", "digits", "--network", "lan", "--batch-size", "16", "--epochs", "1",
               "--devices", str(devices), "--out", str(out), "--no-progress", "--timeout", str(timeout)]
    if processes is not None:
        command += ["--processes", str(processes)]
    print("$", " ".join(command[1:]), file=sys.stderr)
    started = time.monotonic()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    peak = [0.0]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.2):
            peak[0] = max(peak[0], tree_rss_mb(process.pid))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _, err = process.communicate()
    wall = time.monotonic() - started
    done.set()
    sampler.join()
    from splitpipe.runtime.launcher import AUTO_PROCESSES

    row: dict[str, object] = {"devices": devices, "processes": processes or min(devices + 1, AUTO_PROCESSES),
                              "finished": process.returncode == 0, "wall_s": round(wall, 1),
                              "peak_mb": round(peak[0]), "mb_per_node": round(peak[0] / (devices + 1))}
    if process.returncode == 0:
        epoch = json.loads((out / "report.json").read_text())["epochs"][-1]
        row |= {"epoch_s": round(epoch["time_s"], 2), "accuracy": round(epoch["test_accuracy"], 3)}
    else:
        lines = [line for line in err.splitlines() if "error" in line]
        print(f"launch with {devices} devices failed: {' | '.join(lines[:5]) if lines else err[-300:]}",
              file=sys.stderr)
        if logs is not None:
            logs.mkdir(parents=True, exist_ok=True)
            (logs / f"launch-{devices}.log").write_text(err)
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", default="16,32,64", help="comma-separated device counts")
    parser.add_argument("--processes", type=int, help="node processes in all (default: the launcher's choice)")
    parser.add_argument("--timeout", type=float, default=600.0, help="the launches' --timeout")
    parser.add_argument("--out", help="folder for load.md (the table); default: print only")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="splitpipe-load-") as tmp:
        for devices in (int(d) for d in args.devices.split(",")):
            rows.append(one_launch(devices, args.processes, Path(tmp) / f"d{devices}", args.timeout,
                                   Path(args.out) if args.out else None))
    table = format_table(rows, COLUMNS)
    print(table)
    if args.out:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        (Path(args.out) / "load.md").write_text(table + "\n")
    return 0 if all(r["finished"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
