"""Network profiles: named uplink/downlink bandwidth and one-way latency pairs."""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["LinkSpec", "NetworkProfile", "PROFILES", "parse_network"]


@dataclass(frozen=True)
class LinkSpec:
    """One direction of a path: bandwidth in bytes/s (inf = unlimited) and one-way latency."""

    bandwidth_Bps: float
    latency_s: float

    def __post_init__(self) -> None:
        if not self.bandwidth_Bps > 0:
            raise ValueError(f"bandwidth must be positive, got {self.bandwidth_Bps} B/s")
        if not (self.latency_s >= 0 and math.isfinite(self.latency_s)):
            raise ValueError(f"latency must be a finite number >= 0, got {self.latency_s} s")

    def transfer_s(self, nbytes: int) -> float:
        """Time the link is busy sending `nbytes` (latency excluded: it does not occupy the link)."""
        return 0.0 if math.isinf(self.bandwidth_Bps) else nbytes / self.bandwidth_Bps

    @classmethod
    def mbit(cls, mbit_per_s: float, latency_ms: float) -> LinkSpec:
        return cls(mbit_per_s * 1e6 / 8, latency_ms / 1e3)


@dataclass(frozen=True)
class NetworkProfile:
    """A device's access network: `up` is device -> server, `down` is server -> device."""

    name: str
    up: LinkSpec
    down: LinkSpec


UNLIMITED = LinkSpec(math.inf, 0.0)

#: Project defaults (Mbit/s up, Mbit/s down, one-way latency). 4g follows PipeLearn's
#: experiments (10/25 Mbit/s); dc is MP-SL's link between compute nodes (about 7 Gbit/s).
PROFILES: dict[str, NetworkProfile] = {
    "4g": NetworkProfile("4g", LinkSpec.mbit(10, 30), LinkSpec.mbit(25, 30)),
    "4g+": NetworkProfile("4g+", LinkSpec.mbit(20, 20), LinkSpec.mbit(60, 20)),
    "wifi": NetworkProfile("wifi", LinkSpec.mbit(75, 5), LinkSpec.mbit(75, 5)),
    "lan": NetworkProfile("lan", LinkSpec.mbit(1000, 0.2), LinkSpec.mbit(1000, 0.2)),
    "dc": NetworkProfile("dc", LinkSpec.mbit(7000, 0.1), LinkSpec.mbit(7000, 0.1)),
    "none": NetworkProfile("none", UNLIMITED, UNLIMITED),
}


def parse_network(spec: str) -> NetworkProfile:
    """A profile name (`4g`) or a custom `UP/DOWN/LATENCY` in Mbit/s, Mbit/s and ms (`10/25/30`)."""
    spec = spec.strip()
    if spec in PROFILES:
        return PROFILES[spec]
    if "/" not in spec:
        names = ", ".join(PROFILES)
        raise ValueError(f"unknown network profile '{spec}'; choose one of: {names}, or UP/DOWN/MS")
    fields = spec.split("/")
    try:
        up, down, latency = (float(f) for f in fields)
    except ValueError:
        raise ValueError(
            f"network '{spec}' must be UP/DOWN/LATENCY in Mbit/s, Mbit/s and ms, e.g. 10/25/30"
        ) from None
    for what, value in (("uplink", up), ("downlink", down)):
        if not value > 0:
            raise ValueError(f"{what} bandwidth must be positive, got {value:g} Mbit/s in network '{spec}'")
    if not latency >= 0:
        raise ValueError(f"latency must be >= 0, got {latency:g} ms in network '{spec}'")
    return NetworkProfile(spec, LinkSpec.mbit(up, latency), LinkSpec.mbit(down, latency))
