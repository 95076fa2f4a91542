"""MP-SL's closed-form epoch time (EdgeSys'25), to set beside the event predictor.

The paper models a global epoch as one pipeline across owners' mini-batches::

    T = start + empty + (R - 1) * (L_fwd + L_back) + end + aggregation,   R = r * B * K

    start  mean over owners of: forward of part 0 + upload of its activation        (1)
    empty  one mini-batch through every stage after that: each compute node's       (2)
           forward and backward(+step), the links between compute nodes, and the
           owner's last part with its download and upload (mean over owners)
    full   L_fwd + L_back: the slowest compute node's forward plus the slowest      (3)
           compute node's backward(+step); every further mini-batch adds one
    end    mean over owners of: download of the gradient + backward(+step) of part 0 (4)
    aggr   mean upload of parts 0 and P-1 to the aggregator + the slowest averaging  (5)
           (aggregator or a compute node over its K replicas) + mean download

Here R is the epoch's mini-batches over all owners (r = 1 local epoch per estimate), and
every time comes from the profiles as the event predictor charges it (per action: the part's
units and, where the profile carries one, its calibration, planner/calibrate.py; per
mini-batch, the sum over its micro-batches, over the node's speed; a message pays latency +
bytes / rate), so that both estimates read the same unit costs.
The model ignores contention on links and the order owners queue at compute nodes, which
the event predictor plays out; the gap between the two is what `splitpipe plan
--estimator closed-form` shows.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from splitpipe.network import LinkSpec
from splitpipe.plan import Plan, micro_batch_sizes, steps_per_epoch
from splitpipe.profile import Profile
from splitpipe.schedules.ir import AGGREGATE, BACKWARD, FORWARD, STEP

__all__ = ["ClosedForm", "closed_form_epoch"]


@dataclass(frozen=True)
class ClosedForm:
    """The terms of MP-SL's epoch-time model, in seconds, and how many mini-batches R it counts."""

    start_s: float
    empty_s: float
    full_s: float
    end_s: float
    aggregation_s: float
    batches: int
    tail_s: float = 0.0
    """The owners' share of `empty_s` (their last part and its two transfers): it does not
    depend on the compute nodes' cuts."""

    @property
    def fixed_s(self) -> float:
        """Every term that does not depend on the compute nodes' cuts (aggregation approximately)."""
        return self.start_s + self.tail_s + self.end_s + self.aggregation_s

    @property
    def time_s(self) -> float:
        return self.start_s + self.empty_s + (self.batches - 1) * self.full_s + self.end_s + self.aggregation_s

    def formula(self) -> str:
        """The sum as printed by `splitpipe plan`."""
        return (f"{self.time_s:.4g} s = start {self.start_s:.4g} + empty {self.empty_s:.4g} + "
                f"({self.batches} - 1) x full {self.full_s:.4g} + end {self.end_s:.4g} + "
                f"aggregation {self.aggregation_s:.4g}")


def _send_s(link: LinkSpec, nbytes: float) -> float:
    return link.latency_s + link.transfer_s(int(nbytes))


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def _part_s(plan: Plan, profiles: Mapping[str, Profile], node: str, units: range) -> tuple[float, float]:
    """(forward, backward + step) seconds of `units` on `node` for one mini-batch, per action as
    engine/timing.py's ProfileTiming charges them (calibrated where the profile is)."""
    profile, speed = profiles[node], plan.topology.node(node).speed
    place = profile.place(units)
    sizes = micro_batch_sizes(plan.batch_size, plan.batch_size, plan.micro_batches, 0)
    forward = sum(profile.calibrated(FORWARD, profile.forward_s(units, n), place) for n in sizes)
    backward = sum(profile.calibrated(BACKWARD, profile.backward_s(units, n), place) for n in sizes)
    return forward / speed, (backward + profile.calibrated(STEP, profile.step_s(units), place)) / speed


def closed_form_epoch(plan: Plan, profiles: Mapping[str, Profile], epoch: int = 0) -> ClosedForm:
    """MP-SL's closed-form estimate of epoch `epoch` of `plan` (owners, chain of compute nodes, aggregator)."""
    if len(plan.chain) != len(plan.cuts) - 1 or not plan.chain:
        raise ValueError(f"the closed-form model needs one compute node per middle part: {len(plan.chain)} "
                         f"compute nodes for cuts {plan.cuts}")
    topology, batch = plan.topology, plan.batch_size
    bounds = [0, *plan.cuts, plan.num_units]
    parts = [range(a, b) for a, b in zip(bounds, bounds[1:])]
    head, tail, chain = parts[0], parts[-1], plan.chain
    sizes = profiles[chain[0]]
    act = [sizes.boundary_bytes(c) * batch for c in plan.cuts]
    stages = [_part_s(plan, profiles, node, parts[p + 1]) for p, node in enumerate(chain)]
    starts, ends, tails, uploads, downloads = [], [], [], [], []
    for owner in plan.owners:
        fwd0, back0 = _part_s(plan, profiles, owner, head)
        fwd_last, back_last = _part_s(plan, profiles, owner, tail)
        starts.append(fwd0 + _send_s(topology.link(owner, chain[0]), act[0]))  # (1)
        ends.append(_send_s(topology.link(chain[0], owner), act[0]) + back0)  # (4)
        tails.append(_send_s(topology.link(chain[-1], owner), act[-1]) + fwd_last + back_last
                     + _send_s(topology.link(owner, chain[-1]), act[-1]))
        weights = sizes.param_bytes(head) + sizes.param_bytes(tail)
        uploads.append(_send_s(topology.link(owner, plan.server), weights))
        downloads.append(_send_s(topology.link(plan.server, owner), weights))
    links = sum(_send_s(topology.link(a, b), act[p + 1]) + _send_s(topology.link(b, a), act[p + 1])
                for p, (a, b) in enumerate(zip(chain, chain[1:])))
    empty = sum(f + b for f, b in stages) + links + _mean(tails)  # (2)
    full = max(f for f, _ in stages) + max(b for _, b in stages)  # (3)
    aggregation = 0.0
    if plan.aggregates_after(epoch):  # (5)
        owners = len(plan.owners)
        averaging = [_average_s(profiles[plan.server], plan, plan.server, [head, tail], owners)]
        averaging += [_average_s(profiles[node], plan, node, [parts[p + 1]], owners) for p, node in enumerate(chain)]
        aggregation = _mean(uploads) + max(averaging) + _mean(downloads)
    batches = sum(steps_per_epoch(n, batch) for n in plan.shard_sizes)
    return ClosedForm(_mean(starts), empty, full, _mean(ends), aggregation, batches, _mean(tails))


def _average_s(profile: Profile, plan: Plan, node: str, parts: list[range], replicas: int) -> float:
    """Averaging `replicas` copies of `parts` on `node`: copy time per byte read, as the predictor charges it."""
    seconds = sum(profile.calibrated(AGGREGATE, profile.param_bytes(p) * replicas * profile.copy_s_per_byte,
                                     profile.place(p)) for p in parts)
    return seconds / plan.topology.node(node).speed
