"""Benchmark (links issue): a real cluster over links the kernel shapes, beside the emulator.

    sudo python bench/kernel_links.py                 # pipelearn and sfl, 3 repeats each
    sudo python bench/kernel_links.py --keep          # leave the namespaces up to look at them

Each node runs in its own Linux network namespace; device i reaches the server over a veth
pair whose device end sends through `tc tbf` at UP Mbit/s (the uplink) and whose server end
at DOWN Mbit/s (the downlink), no added latency. The real run is given `--network none`, so
only the kernel shapes; the emulator runs the same config with `--network UP/DOWN/0` and
`measured` timing, at the threads a node gets. The table gives both epoch times and the
emulator's error, (emulated - real) / real, per run and the median of the repeats; the
`replayed` column is the emulator given the real run's own compute durations (from its
trace.json), so that only the links and the runtime differ (the real nodes compute beside
each other's transport threads, the emulator alone); the `payload only` column is the
emulator without TCP framing (the link model before it counted headers and ACKs); the
`predicted` column is the predictor's epoch time from this host's calibrated profile (what
`run` reports as `predicted_time_s`) against the real run. A first table, which the host's load does not touch, sets the bytes each
link's qdisc counted in the last run beside the bytes the link model puts on it. Needs root and `ip`/`tc` (iproute2); docs/links.md has the commands.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

import splitpipe
from splitpipe.config import RunConfig
from splitpipe.engine.timing import Timing
from splitpipe.experiment import emulate
from splitpipe.network import RAW
from splitpipe.report import format_table
from splitpipe.report.chrome_trace import read_spans
from splitpipe.runtime.options import NodeOptions
from splitpipe.runtime.protocol import node_id
from splitpipe.schedules.ir import Action
from splitpipe.setup import Setup, prepare
from splitpipe.span import Span

PREFIX = "spk"          # namespaces spk-server, spk-dev0..; veths spk-s0/spk-d0 ..
PORT = 50051
WIRE_COLUMNS = ["technique", "link", "payload_B", "model_B", "kernel_B", "model_error", "payload_error"]
COLUMNS = ["technique", "run", "real_s", "emulated_s", "error", "replayed_s", "replayed_error", "payload_only_s",
           "payload_only_error", "predicted_s", "predicted_error"]


def sh(*args: str) -> None:
    subprocess.run(args, check=True)


def subnet(i: int) -> tuple[str, str]:
    """Server and device addresses of device i's link."""
    return f"10.78.{i}.1", f"10.78.{i}.2"


def set_up(devices: int, up_mbit: float, down_mbit: float, burst: str = "16kb", congestion: str = "") -> None:
    """A namespace per node; device i <-> server over veth spk-d{i} | spk-s{i}, each end tbf-shaped;
    TCP over them with the `congestion` control (per route: `congctl`), else the host's default."""
    congctl = ("congctl", congestion) if congestion else ()
    tear_down(devices)
    server = f"{PREFIX}-server"
    sh("ip", "netns", "add", server)
    sh("ip", "-n", server, "link", "set", "lo", "up")
    for i in range(devices):
        ns, s_end, d_end = f"{PREFIX}-dev{i}", f"{PREFIX}-s{i}", f"{PREFIX}-d{i}"
        s_ip, d_ip = subnet(i)
        sh("ip", "netns", "add", ns)
        sh("ip", "-n", ns, "link", "set", "lo", "up")
        sh("ip", "link", "add", s_end, "netns", server, "type", "veth", "peer", "name", d_end, "netns", ns)
        sh("ip", "-n", server, "addr", "add", f"{s_ip}/24", "dev", s_end)
        sh("ip", "-n", ns, "addr", "add", f"{d_ip}/24", "dev", d_end)
        sh("ip", "-n", server, "link", "set", s_end, "up")
        sh("ip", "-n", ns, "link", "set", d_end, "up")
        sh("ip", "-n", ns, "route", "add", "10.78.0.0/16", "via", s_ip, *congctl)   # the server's every address
        if congestion:   # the links' own subnets too
            for where, dev, ip in ((ns, d_end, d_ip), (server, s_end, s_ip)):
                sh("ip", "-n", where, "route", "replace", f"10.78.{i}.0/24", "dev", dev, "proto", "kernel",
                   "scope", "link", "src", ip, *congctl)
        for where, dev, rate in ((ns, d_end, up_mbit), (server, s_end, down_mbit)):
            sh("tc", "-n", where, "qdisc", "add", "dev", dev, "root", "tbf", "rate", f"{rate:g}mbit",
               "burst", burst, "latency", "1s")


def tear_down(devices: int) -> None:
    names = [f"{PREFIX}-server", *(f"{PREFIX}-dev{i}" for i in range(devices))]
    existing = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    for name in names:
        if name in existing.split():
            subprocess.run(["ip", "netns", "del", name], check=False)


def wire_bytes(devices: int) -> dict[str, int]:
    """Bytes each shaped link sent so far, as its qdisc counts them."""
    out = {}
    for i in range(devices):
        for ns, dev, link in ((f"{PREFIX}-dev{i}", f"{PREFIX}-d{i}", f"device{i}->server"),
                              (f"{PREFIX}-server", f"{PREFIX}-s{i}", f"server->device{i}")):
            stats = json.loads(subprocess.run(["tc", "-n", ns, "-s", "-j", "qdisc", "show", "dev", dev],
                                              capture_output=True, text=True, check=True).stdout)
            out[link] = sum(q.get("bytes", 0) for q in stats)
    return out


def real_run(config: RunConfig, setup: Setup, threads: int, work: Path) -> tuple[dict, list[Span]]:
    """Server and devices started by hand, each in its namespace; returns report.json and its spans."""
    config = config.with_(network=("none",))
    secret = work / "secret"
    secret.write_text(os.urandom(32).hex())
    secret.chmod(0o600)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(Path(splitpipe.__file__).resolve().parent.parent),
                                                    env.get("PYTHONPATH")) if p)
    common: dict[str, Any] = {"secret_file": str(secret), "timeout": 600.0, "threads": threads}
    children = []

    def start(ns: str, name: str, options: NodeOptions) -> None:
        path = work / f"{name}.json"
        path.write_text(options.model_dump_json())
        command = ["ip", "netns", "exec", ns, sys.executable, "-m", "splitpipe.runtime.entry", str(path)]
        children.append(subprocess.Popen(command, env=env))

    out = work / "out"
    start(f"{PREFIX}-server", "server", NodeOptions(role="server", config=config.with_(out=str(out)),
                                                    listen=f"0.0.0.0:{PORT}", port_file=str(work / "port"),
                                                    advertise=subnet(0)[0], **common))
    deadline = time.monotonic() + 60
    while not (work / "port").exists():
        if time.monotonic() > deadline or children[0].poll() is not None:
            raise RuntimeError("the server did not come up")
        time.sleep(0.1)
    quiet = config.with_(out=None, progress=False)
    for name in setup.topology.names:
        if name == setup.plan.server:
            continue
        i = node_id(name, "device")
        s_ip, d_ip = subnet(i)
        start(f"{PREFIX}-dev{i}", name, NodeOptions(role="device", id=i, config=quiet, listen=f"{d_ip}:{PORT}",
                                                    coordinator=f"{subnet(0)[0]}:{PORT}", **common))
    try:
        if children[0].wait(timeout=900) != 0:
            raise RuntimeError(f"the server exited with code {children[0].returncode}")
        for child in children[1:]:
            child.wait(timeout=60)
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
    report = json.loads((out / "report.json").read_text())
    return report, read_spans(out / "trace.json", report)


class Replayed(Timing):
    """Each compute action takes what it took in a real run (its span there), so that an
    emulation of the same plan differs from that run in links and runtime only."""

    name = "replayed"

    def __init__(self, spans: list[Span]) -> None:
        self.took = {(s.resource, s.epoch, s.step, s.owner, s.label): s.duration for s in spans if not s.is_link}

    def duration(self, node: str, action: Action, measured_s: float) -> float:
        key = (node, 0, action.step, action.owner, action.label)
        if key not in self.took:
            raise ValueError(f"the real run has no span of {node}'s {action.label} (step {action.step})")
        return self.took[key]


def emulated(setup: Setup, raw: bool = False, timing: Timing | None = None) -> dict:
    """The emulator's first epoch (with TCP framing, or payload only when `raw`; with its own
    measured compute, or `timing`'s)."""
    if raw:
        links = {ends: replace(spec, framing=RAW) for ends, spec in setup.topology.links.items()}
        setup = replace(setup, plan=replace(setup.plan, topology=replace(setup.topology, links=links)))
    return emulate(setup, timing=timing).report["epochs"][0]  # type: ignore[index,no-any-return]


def wire_rows(technique: str, setup: Setup, epoch: dict, carried: dict[str, int]) -> list[dict[str, object]]:
    """Per link: payload, what the link model says is on the wire (headers, the reverse traffic's
    ACKs) and what the qdisc counted (control messages and gRPC framing included)."""
    rows = []
    for link, kernel in carried.items():
        src, dst = link.split("->")
        spec = setup.topology.link(src, dst)
        payload, back = epoch["bytes"].get(link, 0), epoch["bytes"].get(f"{dst}->{src}", 0)
        model = spec.framing.wire_bytes(payload) + spec.framing.ack_bytes(back)
        rows.append({"technique": technique, "link": link, "payload_B": payload, "model_B": round(model),
                     "kernel_B": kernel, "model_error": (model - kernel) / kernel,
                     "payload_error": (payload - kernel) / kernel})
    return rows


def config_for(technique: str, args: argparse.Namespace) -> RunConfig:
    return RunConfig(technique=technique, model="vgg5", dataset=args.dataset, devices=args.devices,
                     network=(f"{args.up:g}/{args.down:g}/0",), device_speed=(1.0,), server_speed=1.0,
                     batch_size=args.batch_size, micro_batches=args.micro_batches, split=args.split, epochs=1,
                     timing="measured", progress=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--techniques", default="pipelearn,sfl", help="comma list (default: pipelearn,sfl)")
    parser.add_argument("--devices", type=int, default=2)
    parser.add_argument("--dataset", default="synthetic:image_size=32,train_size=600,test_size=100",
                        help="dataset spec (default: small synthetic 32x32x3, so the links carry MBs)")
    parser.add_argument("--split", type=int, default=1, help="cut after this unit (default 1: big activations)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--micro-batches", type=int, default=4)
    parser.add_argument("--up", type=float, default=10.0, help="uplink Mbit/s (default 10)")
    parser.add_argument("--down", type=float, default=25.0, help="downlink Mbit/s (default 25)")
    parser.add_argument("--burst", default="16kb",
                        help="tbf bucket (default 16kb; 1600 is one frame: a line that never sends faster than its rate)")
    parser.add_argument("--congestion-control", default="",
                        help="TCP congestion control on the links (e.g. cubic, bbr; default: the host's)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--keep", action="store_true", help="leave the namespaces up")
    args = parser.parse_args()
    if os.geteuid() != 0 or not shutil.which("tc"):
        raise SystemExit("kernel_links: needs root and iproute2 (ip, tc) to make namespaces and tbf links")
    threads = max(1, (os.cpu_count() or 1) // (args.devices + 1))   # what each node of a launch gets
    if args.devices + 1 > (os.cpu_count() or 1):
        print(f"note: {args.devices + 1} node processes on {os.cpu_count()} cores: the real nodes share cores when "
              "they compute at once, the emulator times each alone (--devices 1 gives each node its core)",
              flush=True)
    torch.set_num_threads(threads)
    started = time.perf_counter()
    rows: list[dict[str, object]] = []
    wires: list[dict[str, object]] = []
    set_up(args.devices, args.up, args.down, args.burst, args.congestion_control)
    try:
        for technique in args.techniques.split(","):
            config = config_for(technique.strip(), args)
            setup = prepare(config)
            runs = []
            for r in range(args.repeats):
                before = wire_bytes(args.devices)
                with tempfile.TemporaryDirectory(prefix="kernel-links-") as tmp:
                    report, spans = real_run(config, setup, threads, Path(tmp))
                real = float(report["epochs"][0]["time_s"])
                after = wire_bytes(args.devices)
                epoch = emulated(setup)
                emu, raw = epoch["time_s"], emulated(setup, raw=True)["time_s"]
                replayed = emulated(setup, timing=Replayed(spans))["time_s"]
                runs.append((real, emu, replayed, raw, epoch["predicted_time_s"]))
                rows.append(_row(technique, str(r), *runs[-1]))
                print(f"{technique} run {r}: real {real:.3f} s, emulated {emu:.3f} s, replayed {replayed:.3f} s, "
                      f"predicted {runs[-1][-1]:.3f} s "
                      f"(load average: {_load()})", flush=True)
            wires += wire_rows(technique, setup, epoch, {k: after[k] - before[k] for k in after})
            medians = [statistics.median(x) for x in zip(*runs)]
            row = _row(technique, "median", *medians)
            for key, column in (("error", 1), ("replayed_error", 2), ("payload_only_error", 3),
                                ("predicted_error", 4)):   # of the runs'
                row[key] = statistics.median((run[column] - run[0]) / run[0] for run in runs)
            rows.append(row)
    finally:
        if not args.keep:
            tear_down(args.devices)
    print(format_table(wires, WIRE_COLUMNS))
    print()
    print(format_table(rows, COLUMNS))
    congestion = args.congestion_control or Path("/proc/sys/net/ipv4/tcp_congestion_control").read_text().strip()
    print(f"tbf burst {args.burst}, TCP congestion control {congestion}; load average at the end: {_load()}; "
          f"benchmark took {time.perf_counter() - started:.0f} s")


def _row(technique: str, run: str, real: float, emu: float, replayed: float, raw: float,
         predicted: float) -> dict[str, object]:
    return {"technique": technique, "run": run, "real_s": real, "emulated_s": emu, "error": (emu - real) / real,
            "replayed_s": replayed, "replayed_error": (replayed - real) / real,
            "payload_only_s": raw, "payload_only_error": (raw - real) / real,
            "predicted_s": predicted, "predicted_error": (predicted - real) / real}


def _load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


if __name__ == "__main__":
    main()
