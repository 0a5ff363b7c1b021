"""Where the optimal scale can be: the floor and ceiling of step 2 of the quantizer's method
(``pipeline.quantization.quantizer``'s docstring, which every "step" here refers to)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.optimize import lsq_linear

BISECTION_STEPS = 40
# The bisection for the scale floor stops when it is this close, relatively, to a scale known
# to be competitive: far finer than the walk's step, so the walk below it costs a solve or two.
FLOOR_PRECISION = 1e-6


def reachable_range(d: np.ndarray) -> tuple[float, float]:
    """[a, b] such that d.u over U(s) (module docstring, step 2) is s qmax [a, b]."""
    pos, neg, total = float(np.maximum(d, 0).sum()), float(np.maximum(-d, 0).sum()), float(d.sum())
    return -(neg + max(total, 0.0)), pos + max(-total, 0.0)


@dataclass(frozen=True)
class ScaleBounds:
    """Where the optimal scale can be (module docstring, step 2), for one problem: what the
    bounds need of the covariance is computed once, for every bound the search asks for."""

    coef: np.ndarray
    cov: np.ndarray
    qmax: int
    cov_inv: np.ndarray
    chol_t: np.ndarray  # C = chol_t^T chol_t
    directions: tuple  # the fixed directions: coordinates, their differences, C w

    @classmethod
    def of(cls, coef: np.ndarray, cov: np.ndarray, qmax: int) -> ScaleBounds:
        n = coef.size
        eye = np.eye(n)
        directions = [eye[i] for i in range(n)] + [eye[i] - eye[j] for i in range(n) for j in range(n) if i != j]
        directions.append(cov @ coef)
        return cls(coef, cov, qmax, np.linalg.inv(cov), np.linalg.cholesky(cov).T, tuple(directions))

    def direction_floor(self, d: np.ndarray, excess: float) -> float:
        """Below this scale no codes reach an excess <= ``excess``, as seen along direction d."""
        a, b = reachable_range(d)
        centre = float(d @ self.coef)
        half_width = math.sqrt(max(excess * float(d @ self.cov_inv @ d), 0.0))
        if centre - half_width > 0 and b > 0:
            return (centre - half_width) / (self.qmax * b)
        if centre + half_width < 0 and a < 0:
            return (centre + half_width) / (self.qmax * a)
        return 0.0

    def relaxation_direction(self, scale: float) -> np.ndarray:
        """C (w - u*) for u* minimising (u - w)^T C (u - w) over U(scale): the direction along
        which the continuous relaxation proves its bound. Any approximation of u* still gives
        a valid direction; only the bound's tightness depends on it."""
        n = self.coef.size
        reach = scale * self.qmax
        design = self.chol_t @ np.hstack([np.eye(n), np.ones((n, 1))])  # u = y + t
        lower = np.r_[np.zeros(n), -reach]
        upper = np.r_[np.full(n, reach), 0.0]
        result = lsq_linear(design, self.chol_t @ self.coef, bounds=(lower, upper), method="bvls")
        u = result.x[:n] + result.x[n]
        return self.cov @ (self.coef - u)

    def floor(self, excess: float, competitive: float) -> float:
        """A scale below which nothing beats ``excess``.

        ``competitive`` is a scale known to reach ``excess`` (the incumbent's), where the
        bisection for the relaxation's bound starts from above."""
        floor = max(self.direction_floor(d, excess) for d in self.directions)
        low, high = floor, competitive
        for _ in range(BISECTION_STEPS):
            if low <= 0 or high <= low * (1 + FLOOR_PRECISION):
                break
            mid = math.sqrt(low * high)
            bound = self.direction_floor(self.relaxation_direction(mid), excess)
            if bound >= mid:
                low = bound  # the relaxation proves nothing below `bound` beats the incumbent
            else:
                high = mid
        return max(low, floor)

    def ceiling(self, excess: float) -> float:
        """A scale above which nothing beats ``excess``: s <= max_i |w_i| + sqrt(excess (C^-1)_ii)."""
        return float(np.max(np.abs(self.coef) + np.sqrt(excess * np.diag(self.cov_inv))))
