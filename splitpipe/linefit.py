"""A unit's seconds as `fixed + per_sample x samples`, fitted through every profiled size.

One profiled point is one moment of the machine: a load spike or a page fault at one size
would otherwise be interpolated into every prediction near it (a profile's 4-sample points
were 17-27% high in one run, docs/planner.md). A line through all sizes spreads the noise;
least squares in relative error lets a 2-sample point count as much as a 16-sample one,
and a point far off the line of the others is left out.
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["fit_line", "smoothed"]

#: A point is left out when its relative residual is this many times the others' and over OUTLIER_MIN.
OUTLIER_FACTOR = 3.0
OUTLIER_MIN = 0.05


def fit_line(points: Mapping[int, float]) -> tuple[float, float]:
    """(fixed, per_sample) seconds, both >= 0, of `points` (samples -> seconds).

    Weighted least squares in relative error; with four or more points, the one whose
    relative residual is over OUTLIER_FACTOR times the largest of the others' (and over
    OUTLIER_MIN) is dropped and the line fitted again. One point: through the origin.
    """
    pairs = sorted((float(n), max(0.0, float(t))) for n, t in points.items())
    if not pairs:
        raise ValueError("fit_line needs at least one (samples, seconds) point")
    if len(pairs) == 1:
        n, t = pairs[0]
        return 0.0, t / max(n, 1.0)
    line = _weighted(pairs)
    if len(pairs) >= 4:
        residuals = [_relative(line, n, t) for n, t in pairs]
        worst = max(range(len(pairs)), key=residuals.__getitem__)
        others = max(r for i, r in enumerate(residuals) if i != worst)
        if residuals[worst] > max(OUTLIER_MIN, OUTLIER_FACTOR * others):
            line = _weighted(pairs[:worst] + pairs[worst + 1:])
    return line


def smoothed(table: Mapping[int, float]) -> dict[int, float]:
    """`table` with every point moved onto its fitted line (the same sizes, so a profile keeps its form)."""
    fixed, per_sample = fit_line(table)
    return {n: fixed + per_sample * n for n in sorted(table)}


def _relative(line: tuple[float, float], n: float, t: float) -> float:
    fixed, per_sample = line
    return abs(fixed + per_sample * n - t) / max(t, 1e-12)


def _weighted(pairs: list[tuple[float, float]]) -> tuple[float, float]:
    """Least squares of t ~ a + b n with weights 1 / t^2, then a and b kept >= 0."""
    w = [1.0 / max(t, 1e-12) ** 2 for _, t in pairs]
    sw = sum(w)
    sn = sum(wi * n for wi, (n, _) in zip(w, pairs))
    st = sum(wi * t for wi, (_, t) in zip(w, pairs))
    snn = sum(wi * n * n for wi, (n, _) in zip(w, pairs))
    snt = sum(wi * n * t for wi, (n, t) in zip(w, pairs))
    det = sw * snn - sn * sn
    if det > 1e-12 * sw * snn:
        b = (sw * snt - sn * st) / det
        a = (st - b * sn) / sw
        if a >= 0 and b >= 0:
            return a, b
        if a < 0:  # through the origin: time proportional to the samples
            return 0.0, max(0.0, snt / snn)
    return st / sw, 0.0  # time that does not grow with samples: a constant
