"""Exact integer least squares in a few unknowns: the inner solver of the quantizer.

Both searches minimise (m - t)^T G (m - t) over integer vectors m, with G symmetric positive
definite, by Schnorr-Euchner sphere decoding: a depth-first search over a Cholesky factor of
G, each coordinate's values visited in order of distance from their conditional optimum, and
every branch cut whose partial cost plus a lower bound on the cost of completing it already
reaches the best full cost. The search is exact: a branch is cut only when no completion of it
can beat the incumbent.

The lower bound on completing a branch (``_completion_bound``) is what makes the search fast
where the constraints bind, as they do at the small scales of the quantizer's search (the
target spreads wider than the codes can). Fixing the last coordinates at m_S leaves the cost
(m_F - x_F)^T G_FF (m_F - x_F) for the free ones, where x_F is their unconstrained optimum
given m_S. By Cauchy-Schwarz, for any direction a, that cost is at least
(a.(m_F - x_F))^2 / (a^T G_FF^-1 a). Two kinds of direction, each cheap:
- a coordinate e_j: m_j must lie in its box, so |m_j - x_j| >= the distance of x_j to the box;
- a difference e_i - e_j (with the span constraint): m_i - m_j <= span, so
  |(m_i - m_j) - (x_i - x_j)| >= x_i - x_j - span.
The bound is the largest over all of them. Without it the search finds the conflict between a
coordinate fixed near its target and a far-off free one only at the last levels, and visits
tens of thousands of nodes where it now visits tens.

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
    """A Gram matrix factored once, for many searches with different targets and bounds.

    Searching with ``gram * s**2`` only multiplies every cost by s^2, so one factorisation
    serves every scale of the quantizer's outer search (targets and bounds in code units).
    Level k of the search fixes coordinate k with coordinates k+1.. already fixed and 0..k-1
    free; the per-level arrays describe the free ones.
    """

    order: np.ndarray  # search order (see search_order)
    diag: np.ndarray  # Cholesky diagonal of the reordered gram
    gram: np.ndarray  # the reordered gram
    shift: np.ndarray  # shift[k, :k]: move of the free optimum x_F per unit move of m_k
    free_var: np.ndarray  # free_var[k, :k]: diag of inv(gram[:k, :k]), i.e. e_j^T G_FF^-1 e_j
    pair_var: tuple  # pair_var[k][i, j]: (e_i - e_j)^T G_FF^-1 (e_i - e_j) (inf on the diagonal)

    @classmethod
    def of(cls, gram: np.ndarray) -> Lattice:
        gram = np.asarray(gram, dtype=np.float64)
        order = search_order(gram)
        g = gram[np.ix_(order, order)]
        n = g.shape[0]
        shift, free_var, pair_var = np.zeros((n, n)), np.zeros((n + 1, n)), [np.zeros((0, 0))]
        for k in range(1, n + 1):
            inv = np.linalg.inv(g[:k, :k])  # the free coordinates' G_FF^-1 at level k
            free_var[k, :k] = np.diag(inv)
            pv = free_var[k, :k, None] + free_var[k, None, :k] - 2 * inv
            np.fill_diagonal(pv, np.inf)
            pair_var.append(pv)
            # Given m_k, the free optimum of coordinates j < k moves by inv[j, k-1]/inv[k-1, k-1]
            # per unit of m_k - x_k (the regression of x_j on x_k under G^-1): used at level k-1.
            shift[k - 1, : k - 1] = inv[: k - 1, k - 1] / inv[k - 1, k - 1]
        diag = np.sqrt(1.0 / free_var[1:, :].diagonal())  # d_k^2 = 1 / (G_{0..k}^-1)_kk
        return cls(order=order, diag=diag, gram=g, shift=shift, free_var=free_var, pair_var=tuple(pair_var))

    def cost(self, m: np.ndarray, target: np.ndarray) -> float:
        """(m - target)^T gram (m - target), both in the caller's coordinate order."""
        d = (np.asarray(m, dtype=np.float64) - target)[self.order]
        return float(d @ self.gram @ d)

    def closest_offsets(
        self, target: np.ndarray, span: int, bound: float = math.inf, start: np.ndarray | None = None
    ) -> tuple[np.ndarray, float] | None:
        """The integer m minimising (m - target)^T gram (m - target) subject to
        max(m) - min(m) <= span and |m_i| <= span, if its cost is below ``bound``.

        ``start`` (an m, e.g. the best of a neighbouring scale) seeds the incumbent so that
        pruning is tight from the first branch; an infeasible one is ignored. Returns
        (m, cost) or None.
        """
        t = np.asarray(target, dtype=np.float64)[self.order]
        if start is not None and (np.ptp(start) > span or np.abs(start).max() > span):
            start = None
        seed = (
            _coordinate_descent(self.gram, t, *_window(t, span))
            if start is None
            else np.asarray(start, dtype=np.float64)[self.order]
        )
        found, _ = _sphere_decode(self, t, -span, span, span, bound, seed)
        return None if found is None else (_unorder(found[0], self.order), found[1])

    def offsets_near(
        self, target: np.ndarray, span: int, bound: float, radius: float, start: np.ndarray | None = None
    ) -> tuple[tuple[np.ndarray, float] | None, list[np.ndarray]]:
        """closest_offsets(target, span, bound, start), and with it every feasible m whose cost
        is below ``radius``: the codes that may be best at a nearby scale."""
        t = np.asarray(target, dtype=np.float64)[self.order]
        if start is not None and (np.ptp(start) > span or np.abs(start).max() > span):
            start = None
        seed = (
            _coordinate_descent(self.gram, t, *_window(t, span))
            if start is None
            else np.asarray(start, dtype=np.float64)[self.order]
        )
        found, near = _sphere_decode(self, t, -span, span, span, bound, seed, radius)
        best = None if found is None else (_unorder(found[0], self.order), found[1])
        return best, [_unorder(m, self.order) for m in near]


def closest_codes(gram: np.ndarray, target: np.ndarray, qmax: int) -> np.ndarray:
    """Exact minimiser of (q - target)^T gram (q - target) over integers 0 <= q_i <= qmax (uint8)."""
    lattice = Lattice.of(gram)
    t = np.asarray(target, dtype=np.float64)[lattice.order]
    seed = _coordinate_descent(lattice.gram, t, 0, qmax)
    found, _ = _sphere_decode(lattice, t, 0, qmax, None, math.inf, seed)
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


# The completion bound is shrunk by this much so that float rounding in it can never cut the
# optimum: the search stays exact, at the price of a bound a hair weaker than the true one.
BOUND_SHRINK = 1.0 - 1e-9


def _completion_bound(lattice: Lattice, k: int, free_opt: np.ndarray, lo: float, hi: float, span: int | None) -> float:
    """A lower bound on the cost of the free coordinates 0..k-1 (module docstring), whose
    unconstrained optimum is free_opt[:k] and whose box is [lo, hi]. Convex in the value just
    fixed (a maximum of convex functions of it), which the search's side cut relies on."""
    if k == 0:
        return 0.0
    x = free_opt[:k]
    outside = np.maximum(lo - x, 0.0) + np.maximum(x - hi, 0.0)
    bound = float((outside * outside / lattice.free_var[k, :k]).max())
    if span is not None and k >= 2:
        over = np.maximum(x[:, None] - x[None, :] - span, 0.0)
        bound = max(bound, float((over * over / lattice.pair_var[k]).max()))
    return bound * BOUND_SHRINK


def _sphere_decode(
    lattice: Lattice,
    target: np.ndarray,
    lo: int,
    hi: int,
    span: int | None,
    bound: float,
    seed: np.ndarray | None,
    radius: float = -math.inf,
) -> tuple[tuple[np.ndarray, float] | None, list[np.ndarray]]:
    """Depth-first over coordinates from last to first, values visited in order of distance
    from the conditional optimum. Each side of it is abandoned once its cost reaches the
    search's limit (values farther out on that side only cost more), or once cost plus
    completion bound reaches it and has stopped falling (it is convex in the value: farther
    values only cost more). The limit is the best cost so far, or ``radius`` while that is
    larger: then every point below ``radius`` is visited.

    Each m_k lies in [lo, hi]; with ``span``, also within ``span`` of every value already
    fixed, which keeps max(m) - min(m) <= span. Returns the best m with cost < bound (or None)
    and every m with cost < radius.
    """
    n = target.size
    diag, shift = lattice.diag, lattice.shift
    best: np.ndarray | None = None
    best_cost = bound
    near: dict[bytes, np.ndarray] = {}  # keyed by value: the seed may be met again as a leaf
    if seed is not None:
        e = seed - target
        seed_cost = float(e @ lattice.gram @ e)
        if seed_cost < best_cost:
            best, best_cost = seed.copy(), seed_cost
        if seed_cost < radius:
            near[(seed + 0.0).tobytes()] = seed + 0.0  # + 0.0: no -0.0, so keys match leaves'
    m = np.zeros(n)

    def box(fixed_min: float, fixed_max: float) -> tuple[float, float]:
        """Where the free coordinates may lie, given the values fixed so far."""
        if span is None or fixed_min > fixed_max:
            return lo, hi
        return max(lo, fixed_max - span), min(hi, fixed_min + span)

    def descend(k: int, cost: float, fixed_min: float, fixed_max: float, free_opt: np.ndarray) -> None:
        nonlocal best_cost, best
        center = float(free_opt[k])
        vmin, vmax = box(fixed_min, fixed_max)
        vmin, vmax = int(vmin), int(vmax)
        up = min(max(round(center), vmin), vmax)
        down = up - 1
        last = {True: math.inf, False: math.inf}  # each side's previous cost plus completion bound
        while up <= vmax or down >= vmin:
            going_up = down < vmin or (up <= vmax and up - center <= center - down)
            if going_up:
                v, up = up, up + 1
            else:
                v, down = down, down - 1
            c = cost + (diag[k] * (v - center)) ** 2
            if c < max(best_cost, radius):
                nxt = free_opt.copy()
                nxt[:k] += (v - center) * shift[k, :k]
                low, high = min(fixed_min, v), max(fixed_max, v)
                f = c + _completion_bound(lattice, k, nxt, *box(low, high), span)
                if f < max(best_cost, radius):
                    m[k] = v
                    if k > 0:
                        descend(k - 1, c, low, high, nxt)
                    else:
                        if c < radius:
                            near[m.tobytes()] = m.copy()
                        if c < best_cost:
                            best_cost, best = c, m.copy()
                    last[going_up] = f
                    continue
                falling = f < last[going_up]
                last[going_up] = f
                if falling:
                    continue
            if going_up:  # nothing farther up can do better
                up = vmax + 1
            else:
                down = vmin - 1

    if _completion_bound(lattice, n, target, lo, hi, span) < max(best_cost, radius):
        descend(n - 1, 0.0, math.inf, -math.inf, target.copy())
    return (None if best is None else (best, best_cost)), list(near.values())
