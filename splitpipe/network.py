"""Network profiles: named uplink/downlink line rates and one-way latencies, and what a link
carries besides payload (headers on every segment, the ACKs of the reverse traffic)."""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["Framing", "RAW", "TCP", "LinkSpec", "NetworkProfile", "PROFILES", "parse_network"]


@dataclass(frozen=True)
class Framing:
    """What a stream of payload costs on the wire besides itself.

    Payload travels in segments of up to `mss` bytes, each with `header` bytes of headers;
    the receiver answers every `per_ack` segments with one ACK of `ack` bytes, which travels
    the other direction. A bulk transfer of n payload bytes therefore puts
    n * (1 + header / mss) bytes on its link (goodput = line rate * mss / (mss + header)) and
    n * ack / (per_ack * mss) bytes on the reverse link. Streams are long (tensors of KBs to
    MBs on one connection), so segments are counted as a fraction, not rounded up.
    """

    mss: int
    header: int
    ack: int
    per_ack: int = 2

    def __post_init__(self) -> None:
        if self.mss < 1 or self.per_ack < 1 or self.header < 0 or self.ack < 0:
            raise ValueError(f"framing needs mss >= 1, per_ack >= 1 and header, ack >= 0, got {self}")

    def wire_bytes(self, nbytes: float) -> float:
        """Bytes on the link for `nbytes` of payload: payload plus a header per segment."""
        return nbytes * (1 + self.header / self.mss)

    def ack_bytes(self, nbytes: float) -> float:
        """Bytes the receiver's ACKs of `nbytes` of payload put on the reverse link."""
        return nbytes * self.ack / (self.per_ack * self.mss)


#: Payload only: hand-built links in tests, where times must be exact arithmetic.
RAW = Framing(mss=1, header=0, ack=0)
#: TCP/IPv4 over Ethernet at MTU 1500, as Linux sends it: MSS 1448 (1500 - IP 20 - TCP 20 -
#: timestamps 12); 66 header bytes per segment as a qdisc counts them (Ethernet 14 + IP 20 +
#: TCP 32); a 66-byte ACK every second segment (delayed ACKs). Overhead 4.6% on the link, 2.3%
#: on the reverse link: what a `tc tbf` link was measured to carry (docs/links.md).
TCP = Framing(mss=1448, header=66, ack=66, per_ack=2)


@dataclass(frozen=True)
class LinkSpec:
    """One direction of a path: line rate in bytes/s (inf = unlimited), one-way latency and framing.

    This is the one formula of what a transfer costs; the event engine and the runtime's
    shaper both book links with it (splitpipe/linkbook.py).
    """

    bandwidth_Bps: float
    latency_s: float
    framing: Framing = RAW

    def __post_init__(self) -> None:
        if not self.bandwidth_Bps > 0:
            raise ValueError(f"bandwidth must be positive, got {self.bandwidth_Bps} B/s")
        if not (self.latency_s >= 0 and math.isfinite(self.latency_s)):
            raise ValueError(f"latency must be a finite number >= 0, got {self.latency_s} s")

    def transfer_s(self, nbytes: float) -> float:
        """Time the link is busy sending `nbytes` of payload with its headers (latency excluded:
        it does not occupy the link)."""
        return self.wire_s(self.framing.wire_bytes(nbytes))

    def ack_s(self, nbytes: float) -> float:
        """Time this link is busy with the ACKs of `nbytes` of payload that came the other way
        (both directions of a connection share its framing)."""
        return self.wire_s(self.framing.ack_bytes(nbytes))

    def wire_s(self, wire_bytes: float) -> float:
        """Time the link is busy sending `wire_bytes` as they are on the wire."""
        return 0.0 if math.isinf(self.bandwidth_Bps) else wire_bytes / self.bandwidth_Bps

    @property
    def goodput_Bps(self) -> float:
        """Payload bytes per second the link delivers when busy."""
        return self.bandwidth_Bps / self.framing.wire_bytes(1.0)

    @classmethod
    def mbit(cls, mbit_per_s: float, latency_ms: float, framing: Framing = TCP) -> LinkSpec:
        """A link of `mbit_per_s` line rate (TCP framing unless told otherwise) and `latency_ms` one way."""
        return cls(mbit_per_s * 1e6 / 8, latency_ms / 1e3, framing)


@dataclass(frozen=True)
class NetworkProfile:
    """A device's access network: `up` is device -> server, `down` is server -> device.

    Rates are line rates: the links carry TCP framing (headers, ACKs; see `TCP`).
    """

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
    """A profile name (`4g`) or a custom `UP/DOWN/LATENCY` in Mbit/s, Mbit/s and ms (`10/25/30`).

    Rates are line rates, as `tc tbf rate` or a data plan states them; TCP framing is added.
    """
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
