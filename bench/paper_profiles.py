"""Measure, once, the per-unit profiles bench/reproduce.py predicts from, into configs/papers/profiles/.

    python bench/paper_profiles.py                 # every model of the papers (about 15 min here)
    python bench/paper_profiles.py --models vgg5   # one

Why a committed profile: a profile measured at each run of the reproduction on a loaded host
moved its figures by orders of magnitude between runs. Measured once, on one thread, at
batch sizes that bracket the papers' (micro-)batches, keeping each timing's fastest repeat
(the one least inflated by other work on the host), and committed, every later run of
bench/reproduce.py predicts the same figures. Each file's `meta` says how it was measured
(host, threads, batch sizes, repeats, load average before and after). The configs' node
speeds (configs/papers/*.toml: owners at 0.1, servers at 1) scale it to the papers' testbeds.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from splitpipe.models import build_model  # noqa: E402
from splitpipe.profile import Profile, measure_profile  # noqa: E402

OUT = Path(__file__).resolve().parents[1] / "configs" / "papers" / "profiles"

#: Batch sizes per model: PipeLearn's batch 100 and its micro-batches (B/N), MP-SL's 128,
#: FTPipeHD's 32 in 4 micro-batches; ResNet-101 stops at 32 (a repeat at 128 takes minutes here):
#: the predictor extends the line through the last two sizes.
BATCH_SIZES: dict[str, tuple[int, ...]] = {
    "vgg5": (5, 10, 20, 50, 100),
    "resnet18": (10, 50, 100),
    "mobilenet_v3_small": (10, 50, 100),
    "vgg19": (16, 64, 128),
    "resnet101": (8, 32),
}


def measure(model: str, repeats: int, warmup: int) -> Profile:
    torch.manual_seed(0)
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    profile = measure_profile(build_model(model, 3, 32, 10), (3, 32, 32), BATCH_SIZES[model], name=model,
                              repeats=repeats, warmup=warmup, fastest=True)
    meta = {"host": "this project's 2-core CPU host, shared with other work", "cpu": platform.processor(),
            "torch": torch.__version__, "threads": torch.get_num_threads(), "batch_sizes": list(BATCH_SIZES[model]),
            "repeats": repeats, "warmup": warmup, "statistic": "fastest repeat",
            "load_average_before": round(load_before, 2), "load_average_after": round(os.getloadavg()[0], 2),
            "measured_s": round(time.perf_counter() - started, 1),
            "date": time.strftime("%Y-%m-%d", time.gmtime()), "command": "python bench/paper_profiles.py"}
    return Profile(profile.model, profile.device, profile.input_bytes, profile.units, profile.copy_s_per_byte, meta)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(BATCH_SIZES), help="comma-separated zoo models")
    parser.add_argument("--repeats", type=int, default=4)
    parser.add_argument("--warmup", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(1)  # one core per node: the unit the configs' speeds are fractions of
    OUT.mkdir(parents=True, exist_ok=True)
    for model in args.models.split(","):
        if model not in BATCH_SIZES:
            raise SystemExit(f"no batch sizes for model {model!r}; choose from {', '.join(BATCH_SIZES)}")
        profile = measure(model, args.repeats, args.warmup)
        (OUT / f"{model}.json").write_text(profile.to_json() + "\n")
        print(f"{model}: {profile.meta['measured_s']} s, load {profile.meta['load_average_before']} -> "
              f"{profile.meta['load_average_after']}", flush=True)


if __name__ == "__main__":
    main()
