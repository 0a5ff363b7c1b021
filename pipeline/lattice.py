"""Exact integer least squares in a few unknowns: the inner solver of the quantizer.

Both searches minimise (m - t)^T G (m - t) over integer vectors m, with G symmetric positive
definite, by Schnorr-Euchner sphere decoding: a depth-first search over a Cholesky factor of
G, each coordinate's values visited in order of distance from their conditional optimum, and
every branch whose partial cost already reaches the best full cost cut. The search is exact:
a branch is cut only when no completion of it can beat the incumbent.

- ``closest_codes``: each m_i in a fixed box [0, qmax] (the codes for one scale and one zero
  point).
- ``Lattice.closest_offsets``: m = q - z for SOME zero point z, i.e. max(m) - min(m) <= qmax and
  |m_i| <= qmax (every zero point at once, for one scale).

numpy only; no I/O.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


def search_order(gram: np.ndarray) -> np.ndarray:
    """Coordinates ordered so the search starts where the lattice is best determined.

    The search fixes the last coordinate first; pruning is strongest when its Cholesky
    diagonal (its variance conditional on the coordinates still free) is large. Greedily
    pick, from the back, the coordinate whose conditional variance is largest.
    """
    remaining = list(range(gram.shape[0]))
    back = []
    while remaining:
        sub = gram[np.ix_(remaining, remaining)]
        cond_var = 1.0 / np.diag(np.linalg.inv(sub))
        back.append(remaining.pop(int(np.argmax(cond_var))))
    return np.array(back[::-1])


@dataclass(frozen=True)
class Lattice:
    """A Gram matrix factored once, for many searches with different targets and weights.

    Searching with ``gram * s**2`` only multiplies the Cholesky diagonal by s, so one
    factorisation serves every scale of the quantizer's outer search.
    """
    order: np.ndarray   # search order (see search_order)
    diag: np.ndarray    # Cholesky diagonal of the reordered gram
    off: np.ndarray     # upper Cholesky factor with unit diagonal (row k divided by diag[k])
    gram: np.ndarray    # the reordered gram

    @classmethod
    def of(cls, gram: np.ndarray) -> Lattice:
        gram = np.asarray(gram, dtype=np.float64)
        order = search_order(gram)
        g = gram[np.ix_(order, order)]
        upper = np.linalg.cholesky(g).T  # g = upper^T upper
        d = np.diag(upper).copy()
        return cls(order=order, diag=d, off=upper / d[:, None], gram=g)

    def cost(self, m: np.ndarray, target: np.ndarray) -> float:
        """(m - target)^T gram (m - target), both in the caller's coordinate order."""
        d = (np.asarray(m, dtype=np.float64) - target)[self.order]
        return float(d @ self.gram @ d)

    def closest_offsets(self, target: np.ndarray, span: int, bound: float = math.inf,
                        start: np.ndarray | None = None) -> tuple[np.ndarray, float] | None:
        """The integer m minimising (m - target)^T gram (m - target) subject to
        max(m) - min(m) <= span and |m_i| <= span, if its cost is below ``bound``.

        ``start`` (an m, e.g. the best of a neighbouring scale) seeds the incumbent so that
        pruning is tight from the first branch; an infeasible one is ignored. Returns
        (m, cost) or None.
        """
        t = np.asarray(target, dtype=np.float64)[self.order]
        if start is not None and (np.ptp(start) > span or np.abs(start).max() > span):
            start = None
        if start is None:
            seed = _coordinate_descent(self.gram, t, *_window(t, span))
        else:
            seed = np.asarray(start, dtype=np.float64)[self.order]
        found = _sphere_decode(self.diag, self.off, t, -span, span, span, bound, seed)
        return None if found is None else (_unorder(found[0], self.order), found[1])


def closest_codes(gram: np.ndarray, target: np.ndarray, qmax: int) -> np.ndarray:
    """Exact minimiser of (q - target)^T gram (q - target) over integers 0 <= q_i <= qmax (uint8)."""
    lattice = Lattice.of(gram)
    t = np.asarray(target, dtype=np.float64)[lattice.order]
    seed = _coordinate_descent(lattice.gram, t, 0, qmax)
    found = _sphere_decode(lattice.diag, lattice.off, t, 0, qmax, None, math.inf, seed)
    assert found is not None  # an infinite bound always finds a point
    return _unorder(found[0], lattice.order).astype(np.uint8)


def _unorder(m: np.ndarray, order: np.ndarray) -> np.ndarray:
    result = np.empty_like(m)
    result[order] = m
    return result


def _window(target: np.ndarray, span: int) -> tuple[int, int]:
    """A box of width ``span`` holding the rounded target's largest values: any point in it
    is feasible for closest_offsets, which makes it a place to start the search from."""
    hi = int(min(np.rint(target).max(), span))
    return max(hi - span, -span), hi


def _coordinate_descent(gram: np.ndarray, target: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """A good feasible point to start the exact search from: the rounded, clipped target,
    then each coordinate set to its best integer given the others until nothing changes.
    When the box clips the target, plain rounding is far off and would leave pruning weak."""
    q = np.clip(np.rint(target), lo, hi)
    for _ in range(100):
        changed = False
        for i in range(q.size):
            d = q - target
            center = target[i] - (gram[i] @ d - gram[i, i] * d[i]) / gram[i, i]
            v = min(max(round(center), lo), hi)
            if v != q[i]:
                q[i], changed = v, True
        if not changed:
            break
    return q


def _sphere_decode(diag: np.ndarray, off: np.ndarray, target: np.ndarray, lo: int, hi: int,
                   span: int | None, bound: float,
                   seed: np.ndarray | None) -> tuple[np.ndarray, float] | None:
    """Depth-first over coordinates from last to first, values visited in order of distance
    from the conditional optimum, each side of it abandoned once its cost reaches the best
    cost so far (values farther out on that side only cost more).

    Each m_k lies in [lo, hi]; with ``span``, also within ``span`` of every value already
    fixed, which keeps max(m) - min(m) <= span. Returns the best m with cost < bound, or None.
    """
    n = target.size
    best: np.ndarray | None = None
    best_cost = bound
    if seed is not None:
        e = (seed - target) * 1.0
        seed_cost = float(np.sum((diag * (off @ e)) ** 2))  # |R e|^2 = e^T gram e
        if seed_cost < best_cost:
            best, best_cost = seed.copy(), seed_cost
    m = np.zeros(n)
    err = np.zeros(n)  # m - target, filled from the last coordinate down

    def descend(k: int, cost: float, fixed_min: float, fixed_max: float) -> None:
        nonlocal best_cost, best
        center = target[k] - float(off[k, k + 1:] @ err[k + 1:])
        vmin, vmax = lo, hi
        if span is not None and k < n - 1:
            vmin, vmax = max(lo, int(fixed_max) - span), min(hi, int(fixed_min) + span)
        up = min(max(round(center), vmin), vmax)
        down = up - 1
        while up <= vmax or down >= vmin:
            if down < vmin or (up <= vmax and up - center <= center - down):
                v, up, going_up = up, up + 1, True
            else:
                v, down, going_up = down, down - 1, False
            c = cost + (diag[k] * (v - center)) ** 2
            if c >= best_cost:
                if going_up:
                    up = vmax + 1
                else:
                    down = vmin - 1
                continue
            m[k] = v
            err[k] = v - target[k]
            if k == 0:
                best_cost, best = c, m.copy()
            else:
                descend(k - 1, c, min(fixed_min, v), max(fixed_max, v))

    descend(n - 1, 0.0, math.inf, -math.inf)
    return None if best is None else (best, best_cost)
