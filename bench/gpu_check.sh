#!/usr/bin/env bash
# The GPU checks, run once on a lent GPU machine (see docs/gpu.md):
#   profiles of vgg5 and resnet18 on CUDA (the server side of a plan), the emulator with the
#   server's parts on CUDA, and MP-SL's compute nodes on CUDA with the allocator's memory peak.
# Usage: OUT=dir bash bench/gpu_check.sh   (runs from the repository root without installing)
set -u
export PYTHONPATH=$PWD
OUT=${OUT:-gpu-out}
mkdir -p "$OUT"
python3 -c "import torch, grpc, google.protobuf as pb; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), torch.cuda.get_device_name(0), 'grpc', grpc.__version__, 'protobuf', pb.__version__)"
python3 - "$OUT" <<'PY'
import copy, sys, time
from splitpipe.models import build_model
from splitpipe.profile import measure_profile
out = sys.argv[1]
for name in ("vgg5", "resnet18"):
    model = build_model(name, 3, 32, 10)
    t = time.perf_counter()
    p = measure_profile(model, (3, 32, 32), [25, 50, 100], name=name, device="cuda", repeats=20, warmup=5)
    open(f"{out}/profile_{name}_cuda.json", "w").write(p.to_json())
    fb = sum(u.forward_s[100] + u.backward_s[100] for u in p.units)
    print(f"{name}: cuda forward+backward at batch 100 = {fb * 1e3:.2f} ms ({time.perf_counter() - t:.1f} s to profile)")
PY
timeout 240 python3 -m splitpipe run --technique pipelearn --dataset synthetic --batch-size 100 --epochs 2 \
    --server-device cuda --device-speed 1 --network wifi --no-progress --out "$OUT/pipelearn-cuda" 2>&1 | tail -4
timeout 240 python3 -m splitpipe run --technique mpsl --model vgg19 --dataset synthetic:train_size=800,test_size=100 \
    --batch-size 50 --epochs 1 --owners 8 --compute-nodes 2 --cuts 2,9,17 --server-device cuda --device-speed 1 \
    --no-progress --out "$OUT/mpsl-cuda" 2>&1 | tail -4
python3 - "$OUT" <<'PY'
import json, sys
for run in ("pipelearn-cuda", "mpsl-cuda"):
    try:
        r = json.load(open(f"{sys.argv[1]}/{run}/report.json"))
    except OSError as exc:
        print(run, "no report:", exc); continue
    e = r["epochs"][-1]
    print(run, "time_s", round(e["time_s"], 3), "acc", e["test_accuracy"], "memory", e.get("memory_bytes"), {k: v for k, v in e.items() if "cuda" in k})
PY
