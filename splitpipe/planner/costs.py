"""Per-unit cost tables for the optimisers, read from profiles, node speeds and links.

Everything is per mini-batch of one data owner: a node's time for a unit is the sum over
the mini-batch's micro-batches of the profile's time at that size, over the node's speed,
exactly as the predictor (and profile timing) would charge it.
"""

from __future__ import annotations

from splitpipe.network import LinkSpec
from splitpipe.plan import micro_batch_sizes
from splitpipe.profile import Profile

__all__ = ["unit_times", "replica_bytes", "link_times"]


def unit_times(
    profile: Profile, speed: float, batch_size: int, micro_batches: int
) -> tuple[list[float], list[float], list[float]]:
    """(forward, backward, step) seconds of every unit for one mini-batch on one node."""
    sizes = micro_batch_sizes(batch_size, batch_size, micro_batches, 0)
    forward, backward, step = [], [], []
    for u in range(len(profile.units)):
        units = range(u, u + 1)
        forward.append(sum(profile.forward_s(units, n) for n in sizes) / speed)
        backward.append(sum(profile.backward_s(units, n) for n in sizes) / speed)
        step.append(profile.step_s(units) / speed)
    return forward, backward, step


def replica_bytes(profile: Profile, batch_size: int) -> list[float]:
    """Memory of one replica of each unit while a mini-batch is in flight.

    3 x its parameters and buffers (weights, gradients, SGD momentum) plus one mini-batch
    of its input and output (what autograd keeps for the backward, roughly): an estimate
    from the profile alone, to compare with a node's memory limit.
    """
    return [
        3.0 * unit.param_bytes + batch_size * (profile.boundary_bytes(u) + unit.output_bytes)
        for u, unit in enumerate(profile.units)
    ]


def link_times(
    profile: Profile, batch_size: int, forward: LinkSpec, backward: LinkSpec
) -> tuple[list[float], list[float]]:
    """Seconds a link is busy per mini-batch with a cut at c = 0..n: the activation on
    `forward`, its gradient on `backward` (same size; latency does not occupy a link)."""
    sizes = [profile.boundary_bytes(c) * batch_size for c in range(len(profile.units) + 1)]
    return [forward.transfer_s(b) for b in sizes], [backward.transfer_s(b) for b in sizes]

