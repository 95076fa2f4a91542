"""PipeLearn's parameter selection: the split point and the micro-batch count that minimise
the predicted epoch time, for all devices together and then for each device.

PipeLearn's own rule (`paper_rule`, `splitpipe plan --method paper`) estimates N from
stage times and a critical path per split; by default we search instead, since the
predictor is the real schedule on the real links: (1) every split x N for all devices alike, then (2) coordinate descent per device: each device in turn tries
every split x N with the others fixed, until a round changes nothing. Devices differ in
speed, link and data, so their best choices may differ; the per-device plan is kept only
if it beats the common one by `min_gain` (a per-device cut costs per-unit FedAvg, see
schedules/split.py). Searches use `estimate_epoch_s`; the result gets a full prediction.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from splitpipe.engine.predict import Prediction, predict_epoch
from splitpipe.plan import Plan
from splitpipe.planner.estimate import estimate_epoch_s
from splitpipe.profile import Profile

__all__ = ["SplitChoice", "micro_batch_choices", "choose_split", "with_choices", "paper_choice", "paper_rule"]

Choice = tuple[int, int]  # (split, micro-batches)


@dataclass(frozen=True)
class SplitChoice:
    """Per-device split and micro-batch count, with the full prediction of the plan."""

    splits: tuple[int, ...]
    micro_batches: tuple[int, ...]
    plan: Plan
    prediction: Prediction
    common: Choice
    common_estimate_s: float
    estimate_s: float
    evaluations: int
    search_s: float

    @property
    def per_device(self) -> bool:
        return len(set(zip(self.splits, self.micro_batches))) > 1


def micro_batch_choices(batch_size: int, limit: int | None = None) -> tuple[int, ...]:
    """Divisors of the batch size up to `limit` (default: half the batch, at most 100, as
    PipeLearn caps N), so that every micro-batch has the same size."""
    top = limit if limit is not None else max(1, min(batch_size // 2, 100))
    return tuple(n for n in range(1, min(top, batch_size) + 1) if batch_size % n == 0)


def with_choices(plan: Plan, choices: Sequence[Choice]) -> Plan:
    """`plan` with device i using split choices[i][0] and choices[i][1] micro-batches."""
    extra = {k: v for k, v in plan.extra.items() if k not in ("device_cuts", "device_micro_batches")}
    if len(set(choices)) == 1:
        split, n = choices[0]
        return replace(plan, cuts=(split,), micro_batches=n, extra=extra)
    splits = tuple(s for s, _ in choices)
    counts = tuple(n for _, n in choices)
    if len(set(splits)) > 1:
        extra["device_cuts"] = tuple((s,) for s in splits)
    if len(set(counts)) > 1:
        extra["device_micro_batches"] = counts
    return replace(plan, cuts=(splits[0],), micro_batches=counts[0], extra=extra)


def choose_split(
    plan: Plan,
    profiles: Mapping[str, Profile],
    *,
    splits: Sequence[int] | None = None,
    micro_batches: Sequence[int] | None = None,
    per_device: bool = True,
    min_gain: float = 0.01,
    max_steps: int = 32,
    max_rounds: int = 3,
) -> SplitChoice:
    """Search split x micro-batches for `plan` (one cut: sfl, pipelearn, sl) by predicted epoch time."""
    started = time.perf_counter()
    splits = tuple(splits or range(1, plan.num_units))
    counts = tuple(micro_batches or micro_batch_choices(plan.batch_size))
    bad = [s for s in splits if not 1 <= s < plan.num_units] + [n for n in counts if not 1 <= n <= plan.batch_size]
    if bad:
        raise ValueError(f"split or micro-batch choices {bad} out of range: splits in 1..{plan.num_units - 1}, "
                         f"micro-batches in 1..{plan.batch_size}")
    cache: dict[tuple[Choice, ...], float] = {}

    def cost(choices: tuple[Choice, ...]) -> float:
        if choices not in cache:
            cache[choices] = estimate_epoch_s(with_choices(plan, choices), profiles, max_steps=max_steps)
        return cache[choices]

    owners = len(plan.owners)
    grid = [(s, n) for s in splits for n in counts]
    common = min(grid, key=lambda c: cost((c,) * owners))  # (1)
    best = (common,) * owners
    if per_device and owners > 1:
        best = _descend(best, grid, cost, max_rounds)  # (2)
        if cost(best) > cost((common,) * owners) * (1 - min_gain):
            best = (common,) * owners
    chosen = with_choices(plan, best)
    return SplitChoice(
        splits=tuple(s for s, _ in best), micro_batches=tuple(n for _, n in best), plan=chosen,
        prediction=predict_epoch(chosen, profiles), common=common,
        common_estimate_s=cost((common,) * owners), estimate_s=cost(best),
        evaluations=len(cache), search_s=time.perf_counter() - started,
    )


def _descend(start: tuple[Choice, ...], grid: list[Choice], cost, max_rounds: int) -> tuple[Choice, ...]:  # type: ignore[no-untyped-def]
    best = start
    for _ in range(max_rounds):
        changed = False
        for i in range(len(best)):
            options = [best[:i] + (c,) + best[i + 1:] for c in grid]
            candidate = min(options, key=cost)
            if cost(candidate) < cost(best) * (1 - 1e-9):
                best, changed = candidate, True
        if not changed:
            break
    return best


def paper_choice(
    profile_device: Profile, profile_server: Profile, plan: Plan, device: str
) -> Choice:
    """PipeLearn's own rule (their `recommend_parameter`) for one device: see `paper_rule`."""
    split, n, _ = paper_rule(profile_device, profile_server, plan, device)
    return split, n


def paper_rule(
    profile_device: Profile, profile_server: Profile, plan: Plan, device: str
) -> tuple[int, int, float]:
    """PipeLearn's own rule for one device: (split, micro-batches, its critical-path estimate).

    Per split s: Fc, Bc = the device's forward and backward time of units < s, Fs, Bs = the
    server's for the rest, U, D = upload and download of the activation at s (one
    mini-batch each, in bytes); N = ceil((U + Fs + Bs + D) / min(Fc, Bc)) + 1, capped at
    min(N, B/2, 100) and lowered to a divisor of B; the split with the shortest critical path
    of the micro-batch pipeline (every stage's time / N) wins, the first on ties.
    """
    topology, b = plan.topology, plan.batch_size
    d_speed, s_speed = topology.node(device).speed, topology.node(plan.server).speed
    up, down = topology.link(device, plan.server), topology.link(plan.server, device)
    best: tuple[float, Choice] | None = None
    for s in range(1, plan.num_units):
        head, tail = range(0, s), range(s, plan.num_units)
        fc, bc = profile_device.forward_s(head, b) / d_speed, profile_device.backward_s(head, b) / d_speed
        fs = profile_server.forward_s(tail, b) / s_speed
        bs = profile_server.backward_s(tail, b) / s_speed
        size = profile_device.boundary_bytes(s) * b
        u, d = up.transfer_s(size), down.transfer_s(size)
        n = math.ceil((u + fs + bs + d) / max(min(fc, bc), 1e-12)) + 1
        n = max(1, min(n, max(1, b // 2), 100))
        while b % n:
            n -= 1
        time_s = _critical_path(n, fc, u, fs + bs, d, bc)
        if best is None or time_s < best[0]:
            best = (time_s, (s, n))
    assert best is not None
    return best[1][0], best[1][1], best[0]


def _critical_path(n: int, fc: float, u: float, server: float, d: float, bc: float) -> float:
    """One iteration of n micro-batches through device forward, upload, server, download, device backward."""
    f_end = up_end = s_end = d_end = b_end = 0.0
    ends = []
    for _ in range(n):
        f_end += fc / n
        up_end = max(f_end, up_end) + u / n
        s_end = max(up_end, s_end) + server / n
        d_end = max(s_end, d_end) + d / n
        ends.append(d_end)
    for arrived in ends:
        b_end = max(b_end, f_end, arrived) + bc / n
    return b_end
