"""What the memory meter's saved-tensor hooks cost a unit's forward (engine/memory.py, point 4).

Every Forward runs under `MemoryMeter.saving` (the emulator's and a real node's alike). For
each unit of the model at each batch size this times the forward alone, under bare identity
hooks (torch's own cost of a Python hook per saved tensor: the floor), and under the meter;
with `--against FILE`, also under another version of engine/memory.py, in the same rounds
(modes in turn, order rotated every round; thread CPU time; malloc keeps freed blocks as a
real node's does, so page faults do not drown the difference). Medians in us.

    git show REV:splitpipe/engine/memory.py > /tmp/memory_before.py
    PYTHONPATH=. python bench/meter_hooks.py --model vgg5 --sizes 2,16 --repeats 100 --against /tmp/memory_before.py
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import time
from collections.abc import Callable

import torch
from torch import nn

from splitpipe.config import RunConfig
from splitpipe.engine.memory import MemoryMeter
from splitpipe.experiment import prepare
from splitpipe.report import format_table
from splitpipe.runtime.transport.memory import keep_freed_memory


def _identity(tensor: torch.Tensor) -> torch.Tensor:
    return tensor


def _metered(meter: MemoryMeter) -> Callable[[nn.Module, torch.Tensor], torch.Tensor]:
    count = [0]

    def forward(unit: nn.Module, inp: torch.Tensor) -> torch.Tensor:
        count[0] += 1
        with meter.saving("bench", count[0], unit):
            out = unit(inp)
        meter.release(count[0])
        return out
    return forward


def _bare(unit: nn.Module, inp: torch.Tensor) -> torch.Tensor:
    with torch.autograd.graph.saved_tensors_hooks(_identity, _identity):
        return unit(inp)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="vgg5")
    parser.add_argument("--sizes", default="2,16", help="samples per forward, comma separated")
    parser.add_argument("--repeats", type=int, default=100)
    parser.add_argument("--against", help="another engine/memory.py to time in the same rounds")
    args = parser.parse_args()
    torch.set_num_threads(1)
    keep_freed_memory()
    clock = time.thread_time
    setup = prepare(RunConfig(model=args.model, dataset="synthetic:train_size=64,test_size=16", devices=1,
                              batch_size=16, epochs=1, progress=False))
    units = setup.model.train()
    modes: dict[str, Callable[[nn.Module, torch.Tensor], torch.Tensor]] = {
        "plain": lambda unit, inp: unit(inp), "bare": _bare, "meter": _metered(MemoryMeter())}
    if args.against:
        spec = importlib.util.spec_from_file_location("memory_against", args.against)
        assert spec is not None and spec.loader is not None
        other = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(other)
        modes["against"] = _metered(other.MemoryMeter())
    names = list(modes)
    rows = []
    for samples in (int(s) for s in args.sizes.split(",")):
        x = torch.randn(samples, *setup.dataset.x_train.shape[1:])
        for u, unit in enumerate(units):
            inp = x.detach().requires_grad_(u > 0)
            times: dict[str, list[float]] = {m: [] for m in names}
            for r in range(args.repeats + 3):
                for m in names[r % len(names):] + names[:r % len(names)]:
                    t0 = clock()
                    out = modes[m](unit, inp)
                    t1 = clock()
                    del out
                    if r >= 3:
                        times[m].append(t1 - t0)
            med = {m: statistics.median(v) * 1e6 for m, v in times.items()}
            row = {"samples": samples, "unit": u, "plain_us": med["plain"], "bare_hooks_+us": med["bare"] - med["plain"],
                   "meter_+us": med["meter"] - med["plain"]}
            if args.against:
                row["against_+us"] = med["against"] - med["plain"]
            rows.append(row)
            with torch.no_grad():
                x = unit(x)
    print(format_table(rows, list(rows[0])))


if __name__ == "__main__":
    main()
