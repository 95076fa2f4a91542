"""Byte sizes for people: "2GB" and "512MiB" in, "1.0 MB" out."""

from __future__ import annotations

import math
import re

__all__ = ["format_bytes", "parse_bytes", "parse_limits"]

_FACTORS = {"": 1, "b": 1, "kb": 1e3, "mb": 1e6, "gb": 1e9, "tb": 1e12,
            "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}


def format_bytes(n: float) -> str:
    """Decimal units, one decimal: 3200000 -> '3.2 MB'."""
    if math.isinf(n):
        return "unlimited"
    for unit, factor in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if abs(n) >= factor:
            return f"{n / factor:.1f} {unit}"
    return f"{n:.0f} B"


def parse_bytes(text: str) -> float:
    """'2GB', '512MiB', '1.5e9', 'inf' (no limit) -> bytes."""
    spec = text.strip().lower().replace(" ", "")
    if spec in ("inf", "none", "unlimited"):
        return math.inf
    match = re.fullmatch(r"([0-9.]+(?:e[+-]?[0-9]+)?)([a-z]*)", spec)
    if match is None or match.group(2) not in _FACTORS:
        raise ValueError(f"memory size '{text}' must be a number with an optional unit (B, kB, MB, GB, MiB, GiB), "
                         "e.g. 2GB")
    value = float(match.group(1)) * _FACTORS[match.group(2)]
    if not value > 0:
        raise ValueError(f"memory size '{text}' must be > 0")
    return value


def parse_limits(text: str, nodes: int, names: list[str] | None = None) -> list[float]:
    """One size for every node, or a comma list with one per node."""
    values = [parse_bytes(v) for v in text.split(",")]
    if len(values) == 1:
        return values * nodes
    if len(values) != nodes:
        who = f" ({', '.join(names)})" if names else ""
        raise ValueError(f"memory-limit has {len(values)} values for {nodes} compute nodes{who}: give one or one per node")
    return values
