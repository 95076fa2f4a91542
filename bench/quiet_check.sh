#!/usr/bin/env bash
# Issue 13's figures on a quiet many-core host (this project's own 2-core host is shared and
# loaded, so its timings measure the load): transport ratios, CPU cost of the wire, and the
# planner's prediction error over the quick grid (one process per model, one torch thread each).
# Usage: OUT=dir bash bench/quiet_check.sh   (from the repository root, without installing)
set -u
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
OUT=${OUT:-quiet-out}
mkdir -p "$OUT"
PY=${PY:-python3}
{ nproc; uptime; $PY -c "import torch, sys; print(sys.version.split()[0], 'torch', torch.__version__)"; } | tee "$OUT/host.txt"
for m in vgg5 resnet18 mobilenet_v3_small; do
    timeout "${PLANNER_S:-420}" $PY bench/planner.py --quick --clock cpu --json --no-choice --models "$m" \
        >"$OUT/planner_$m.json" 2>"$OUT/planner_$m.err" &
done
timeout 240 $PY bench/transport_throughput.py --repeats 5 --total-mib 128 --round-trips 200 --json \
    >"$OUT/transport.json" 2>"$OUT/transport.err"; tail -3 "$OUT/transport.err"; cat "$OUT/transport.json"
timeout 120 $PY bench/transport_cpu.py --repeats 5 >"$OUT/transport_cpu.txt" 2>&1; cat "$OUT/transport_cpu.txt"
wait
uptime | tee -a "$OUT/host.txt"
for m in vgg5 resnet18 mobilenet_v3_small; do
    tail -2 "$OUT/planner_$m.err"
    $PY -c "import json,sys; d=json.load(open(sys.argv[1])); print(sys.argv[2], 'mean', d.get('mean_error'), 'worst', d.get('worst_error'))" "$OUT/planner_$m.json" "$m" || true
done
