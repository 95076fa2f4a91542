"""Per action: what the executor measures for a part against the sum of its units' profiled times.

The prediction charges a part's Forward or Backward the sum of its units' profiled times plus
the calibration (planner/calibrate.py). This shows, without the calibration, where the two
differ: for each split x micro-batch count, the medians of the first part's (device) and last
part's (server) Forward and Backward as the TensorExecutor runs them (PipeLearn, one device,
calibration-like short runs), beside the sum of their units timed as the profile times them.
Runs and unit timings alternate in rounds in one process, so a change of the host's speed
hits both alike (docs/planner.md: paired comparisons).

    python bench/part_costs.py --model vgg5 --configs 1x1,1x8,4x1,4x8 --rounds 6
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
from collections import defaultdict

import torch

from splitpipe.config import RunConfig
from splitpipe.experiment import prepare
from splitpipe.planner.calibrate import calibration_plan, measure_run
from splitpipe.profile import _forward_backward_times
from splitpipe.report import format_table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="vgg5")
    parser.add_argument("--configs", default="1x1,1x8,4x1,4x8", help="split x micro-batches, comma separated")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args()
    torch.set_num_threads(1)
    clock = time.thread_time  # this thread's CPU time: a loaded host does not inflate it
    configs = [tuple(int(x) for x in c.split("x")) for c in args.configs.split(",")]
    setup = prepare(RunConfig(model=args.model, dataset="synthetic:train_size=64,test_size=16", devices=1,
                              batch_size=args.batch_size, epochs=2, progress=False))
    model, n = setup.model.train(), len(setup.model)
    sizes = sorted({-(-args.batch_size // m) for _, m in configs})
    units = copy.deepcopy(model).train()
    inputs: dict[int, list[torch.Tensor]] = {}
    for s in sizes:
        x = torch.randn(s, *setup.dataset.x_train.shape[1:])
        inputs[s] = []
        for u, unit in enumerate(units):
            inputs[s].append(x.detach().requires_grad_(u > 0))
            with torch.no_grad():
                x = unit(x)
    alone: dict[tuple[str, int, int], list[float]] = defaultdict(list)
    executed: dict[tuple[int, int, str, int], list[float]] = defaultdict(list)
    for _ in range(args.rounds):
        for split, micro_batches in configs:
            plan = calibration_plan(n, split, args.batch_size, micro_batches, steps=2)
            for _node, action, seconds in measure_run(plan, model, setup.dataset, 2, "cpu", clock):
                executed[(split, micro_batches, action.op, action.part)].append(seconds)
        for s in sizes:
            for u, unit in enumerate(units):
                forward, backward = _forward_backward_times(unit, inputs[s][u], 3, 1, lambda: None, clock)
                alone[("F", u, s)] += forward
                alone[("B", u, s)] += backward
    rows = []
    for split, micro_batches in configs:
        samples = -(-args.batch_size // micro_batches)
        for part, part_units in ((0, range(split)), (1, range(split, n))):
            for op in "FB":
                measured = statistics.median(executed[(split, micro_batches, op, part)])
                summed = sum(statistics.median(alone[(op, u, samples)]) for u in part_units)
                rows.append({"split": split, "micro_batches": micro_batches, "samples": samples, "part": part,
                             "units": len(part_units), "op": op, "executor_ms": measured * 1e3,
                             "units_sum_ms": summed * 1e3, "diff_ms": (measured - summed) * 1e3,
                             "ratio": measured / summed})
    print(format_table(rows, list(rows[0])))


if __name__ == "__main__":
    main()
