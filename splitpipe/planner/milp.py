"""One call into HiGHS for the planner's ILPs: sparse rows in, scipy's MILP result out."""

from __future__ import annotations

import numpy as np
from scipy.optimize import Bounds, LinearConstraint, OptimizeResult, milp
from scipy.sparse import lil_matrix

__all__ = ["solve_milp"]

Row = tuple[dict[int, float], float, float]


def solve_milp(objective: np.ndarray, rows: list[Row], n_var: int, n_int: int, time_limit_s: float) -> OptimizeResult:
    """Minimise `objective` subject to lo <= sum(terms) <= hi per row; the first `n_int` variables
    are binary, the rest (two bounds: the slowest forward and backward stage) continuous >= 0."""
    matrix = lil_matrix((len(rows), n_var))
    lower, upper = np.empty(len(rows)), np.empty(len(rows))
    for r, (terms, lo, hi) in enumerate(rows):
        for col, value in terms.items():
            matrix[r, col] = value
        lower[r], upper[r] = lo, hi
    integrality = np.r_[np.ones(n_int), np.zeros(n_var - n_int)]
    bounds = Bounds(np.zeros(n_var), np.r_[np.ones(n_int), np.full(n_var - n_int, np.inf)])
    return milp(objective, integrality=integrality, bounds=bounds,
                constraints=LinearConstraint(matrix.tocsr(), lower, upper),
                options={"mip_rel_gap": 0.0, "time_limit": time_limit_s})
