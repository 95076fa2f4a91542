#!/usr/bin/env bash
# Issue 13's figures on a quiet many-core host (this project's own 2-core host is shared and
# loaded, so its timings measure the load): transport ratios, CPU cost of the wire, and the
# planner's prediction error over the quick grid (one process per model, one torch thread each),
# beside a second measurement of every configuration scored the same way (what the host can judge).
# Usage: OUT=dir bash bench/quiet_check.sh   (from the repository root, without installing)
#   OLD=dir: also the transport benchmarks of another checkout (its repository root), in turns
#   with this one's, for a before/after on the same machine.
set -u
export PYTHONUNBUFFERED=1
OUT=${OUT:-quiet-out}
LOGS=${LOGS:-$OUT}
mkdir -p "$OUT" "$LOGS"
PY=${PY:-python3}
HERE=$PWD
BASE=${PYTHONPATH:-}
{ nproc; uptime; $PY -c "import torch, sys; print(sys.version.split()[0], 'torch', torch.__version__)"; } | tee "$LOGS/host.txt"
# The transport benchmarks pin their two processes to the first two CPUs (--cpus apart): keep the
# planner runs off those where there are CPUs to spare.
OFF=""
REST=$($PY -c "import os; c = sorted(os.sched_getaffinity(0)); print(','.join(map(str, c[2:])) if len(c) >= 6 else '')")
if command -v taskset >/dev/null && [ -n "$REST" ]; then OFF="taskset -c $REST"; fi
for m in vgg5 resnet18 mobilenet_v3_small; do
    PYTHONPATH=$HERE${BASE:+:$BASE} $OFF timeout "${PLANNER_S:-600}" $PY bench/planner.py --quick --clock cpu --json \
        --no-choice --remeasure --models "$m" >"$OUT/planner_$m.json" 2>"$LOGS/planner_$m.err" &
done
transport() {  # $1: label, $2: checkout
    (cd "$2" && export PYTHONPATH=$2${BASE:+:$BASE} &&
     echo "== $1 transport_throughput" &&
     timeout 240 $PY bench/transport_throughput.py --repeats 5 --total-mib 128 --round-trips 200 --json 2>&1 | tail -2 &&
     echo "== $1 transport_cpu" &&
     timeout 180 $PY bench/transport_cpu.py --repeats 5 2>&1 | tail -12)
}
transport new "$HERE"
if [ -n "${OLD:-}" ]; then transport old "$(cd "$OLD" && pwd)"; transport new "$HERE"; fi
wait
uptime | tee -a "$LOGS/host.txt"
for m in vgg5 resnet18 mobilenet_v3_small; do
    tail -2 "$LOGS/planner_$m.err"
    $PY -c "import json,sys; d=json.load(open(sys.argv[1])); print(sys.argv[2], 'mean', d.get('mean_error'), 'worst', d.get('worst_error'), 'measured again: mean', d.get('remeasure_mean_error'), 'worst', d.get('remeasure_worst_error'))" "$OUT/planner_$m.json" "$m" || true
done
