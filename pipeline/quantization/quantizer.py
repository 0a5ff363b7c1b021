"""The quantizer: BITS-bit codes, ONE scale and ONE zero point that minimise the training MSE.

What is optimal, precisely. For least-squares weights w and feature covariance C, any weights
w_hat = s * (q - z) with the refitted intercept have training MSE
MSE(w) + (w_hat - w)^T C (w_hat - w) (the "excess"). This module minimises the excess over
the codes q in [0, 2^BITS - 1]^8, the zero point z in [0, 2^BITS - 1] and the scale s > 0,
exactly: the result is the optimum over all three, up to the float32 rounding of the stored
scale and weights, which ``gap_bound`` bounds (about 1e-5 of the excess or less).

1. Codes and zero point, exactly, for each scale tried. With m = q - z the excess is
   f(s, m) = (s m - w)^T C (s m - w), and m is reachable with some zero point iff
   max(m) - min(m) <= qmax and |m_i| <= qmax. One sphere decoding under that constraint
   (``lattice.Lattice.closest_offsets``) gives F(s) = min_m f(s, m) over every zero point.
2. Where the optimal scale can be. B is the best excess found so far (the incumbent).
   - Below: every reachable s m lies in U(s) = {t + y : t in [-s qmax, 0], y in [0, s qmax]^8},
     and for any direction d, |d.(u - w)| <= sqrt(B d^T C^-1 d) when u has excess <= B
     (Cauchy-Schwarz). d.u over U(s) is s qmax [a(d), b(d)] in closed form, so each d gives
     a scale below which nothing can beat B. The directions: the coordinates, their
     differences, and the gradient C (w - u*) at the continuous relaxation's minimiser u* of
     a bisection over s. Any d gives a valid bound; a good d gives a tight one.
   - Above: some m_i != 0, so s <= |s m_i| <= |w_i| + sqrt(B (C^-1)_ii).
3. The scales in that range, walked upward; every code vector that can be optimal is met.
   f(., m) is a parabola with minimum at s*(m) (closed form), so
   f(s, m) = f(s*, m) + (s - s*)^2 m^T C m. For the optimum (m, s*) and a walked scale s1
   with s1 <= s* <= s1 (1 + e), that gives f(s1, m) <= B + G with G = e^2 (|w|_C + sqrt(B))^2
   (as s* |m|_C <= |w|_C + sqrt(B)). So at each s1 the decoder lists every m with
   f(s1, m) < B + G, and each is scored at its own s*(m): the optimum's codes are among them.
   The step e is chosen so that G is WALK_SLACK of the excess (a few codes listed per scale).
   A longer step of (1 + delta), delta = (sqrt(F(s1)) - sqrt(B)) / (|w|_C + sqrt(B)), skips
   scales where no m can beat B: for such m, |s m|_C <= |w|_C + sqrt(B), so
   sqrt(f(s, m)) >= sqrt(F(s1)) - |s - s1| |m|_C > sqrt(B). Where F is far above the
   incumbent the walk strides; near it, it takes the step e and lists what is near.
4. The result is stored as float32 scale and weights; what that rounding may cost is the gap.

The naive pair (min-max scale, rounded zero point, rounded codes) is the first incumbent, so
the result is never worse than rounding to nearest; each single +-1 code at its own best scale
follows (so the incumbent always beats zero weights, which step 2 needs); a coarse pass around
it finds a good incumbent before the walk. Each inner solve gets the incumbent as its bound and its codes as
the starting point, so most scales are settled at the first levels of the search.

Cost. On this project's data every width takes well under a second. Where no codes come close
to the weights (the best excess is most of w^T C w: a covariance that penalises every direction
but the weights' own, at 2 bits), thousands of codes lie within the listing slack at each
scale and the search can take minutes at n = 8; the result is still exact.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from pipeline.quantization.bounds import ScaleBounds
from pipeline.quantization.lattice import Lattice
from pipeline.quantization.qparams import dequantize

# The walk's step lists, at each scale, the codes within this fraction of the incumbent's
# excess (module docstring, step 3). Exactness does not depend on it, only the balance: a
# larger value takes fewer, longer steps that each list more codes.
WALK_SLACK = 1e-2
# The first, uncertified pass that finds a good incumbent: scales from 1/4x to 4x the
# min-max scale, this many per octave (2**(k/n) contains 1.0, the naive pair's scale).
COARSE_STEPS_PER_OCTAVE = 32
COARSE_OCTAVES = 2
# In the walk, an inner solve looks for codes up to this multiple of the incumbent's excess:
# a larger value lets the walk stride further where nothing is close, at a costlier solve.
WALK_REACH = 4.0
MAX_WALK_REACH = 4.0**8
# After this many solves in one walk, the rest of the range is walked in as many more, at the
# step that fits: on problems where the step would need more (very ill-conditioned ones, far
# from this data's), each solve lists more codes instead; the result stays exact.
WALK_BUDGET = 2000
# Each solve lists codes within at most this fraction of the incumbent's excess, however wide
# the step: beyond the budget, what a wider step would need beyond it is the certified gap.
MAX_LISTING_SLACK = 0.1
# float32 scales differ from the float64 values they round by this much, relatively, at most.
FLOAT32_REL = 2.0**-24


@dataclass(frozen=True)
class Search:
    """The chosen codes and what the search guarantees about them."""

    codes: np.ndarray  # (8,) uint8
    scale: np.float32
    zero_point: np.uint8
    excess_mse: float  # of the float32 dequantized weights
    gap_bound: float  # certified: excess_mse - optimum <= gap_bound (float32 rounding only)
    scale_range: tuple[float, float]  # the optimum's scale is certified to lie in this range
    grid_ratio: float  # the walk's step: consecutive scales differ by at most this
    scales_tried: int


def excess_mse(weights: np.ndarray, coef: np.ndarray, cov: np.ndarray) -> float:
    """Training MSE added by replacing the least-squares weights coef with weights."""
    d = np.asarray(weights, dtype=np.float64) - coef
    return float(d @ cov @ d)


def naive_codes(coef: np.ndarray, bits: int) -> tuple[np.ndarray, np.float32, int]:
    """The common baseline: min-max scale (range including 0), rounded zero point, rounded codes."""
    qmax = 2**bits - 1
    lo, hi = min(float(coef.min()), 0.0), max(float(coef.max()), 0.0)
    scale = np.float32((hi - lo) / qmax) if hi > lo else np.float32(1)
    zero_point = int(np.clip(np.rint(-lo / float(scale)), 0, qmax))
    codes = np.clip(np.rint(coef / float(scale)) + zero_point, 0, qmax).astype(np.uint8)
    return codes, scale, zero_point


class _Incumbent:
    """The best (offsets m, float32 scale) so far, judged by the float32 dequantized excess."""

    def __init__(self, coef: np.ndarray, cov: np.ndarray, qmax: int):
        self.coef, self.cov, self.qmax = coef, cov, qmax
        self.offsets: np.ndarray | None = None
        self.scale = np.float32(0)
        self.excess = math.inf
        self.tried = 0

    def offer(self, offsets: np.ndarray, scale: np.float32) -> None:
        weights = dequantize(offsets.astype(np.float32), scale, np.float32(0))
        cost = excess_mse(weights, self.coef, self.cov)
        if cost < self.excess:
            self.offsets, self.scale, self.excess = offsets.copy(), scale, cost

    def solve(self, lattice: Lattice, scale: np.float32, reach: float = 1.0, slack: float = 0.0) -> float | None:
        """F(scale), exactly, if it is below ``reach`` times the incumbent's excess (None if
        not). Every code vector within ``slack`` of the incumbent's excess at this scale is
        scored at its own best scale; better codes become the incumbent."""
        s = float(scale)
        self.tried += 1
        # Costs in the decoder are in code units: excess = s^2 * (m - w/s)^T C (m - w/s).
        found, near = lattice.offsets_near(
            self.coef / s,
            self.qmax,
            bound=reach * self.excess / (s * s),
            radius=(self.excess + slack) / (s * s) if slack > 0 else -math.inf,
            start=self.offsets,
        )
        if found is not None:
            self.offer(found[0], scale)
            near.append(found[0])
        if near:
            self.offer_at_own_scales(np.array(near))
        return None if found is None else found[1] * s * s

    def offer_at_own_scales(self, offsets: np.ndarray) -> None:
        """Each row of ``offsets`` at its own best scale (closed form): cheap, and never worse.

        Scored all at once, as listings can hold thousands of rows; the rows that come within
        rounding of the incumbent go to ``offer``, which judges them exactly, one by one."""
        m = offsets.astype(np.float64)
        numerator, denominator = m @ self.cov @ self.coef, np.einsum("ij,jk,ik->i", m, self.cov, m)
        usable = (denominator > 0) & (numerator > 0)
        m, scales = offsets[usable], (numerator[usable] / denominator[usable]).astype(np.float32)
        weights = m.astype(np.float32) * scales[:, None]  # dequantize with zero point 0, row-wise
        d = weights.astype(np.float64) - self.coef
        costs = np.einsum("ij,jk,ik->i", d, self.cov, d)
        for i in np.flatnonzero(costs < self.excess * (1 + 1e-9)):
            self.offer(m[i], scales[i])


def walk_step(coef_norm: float, excess: float, slack: float) -> float:
    """e with e^2 (|w|_C + sqrt(excess))^2 = slack * excess (module docstring, step 3)."""
    return math.sqrt(slack * excess) / (coef_norm + math.sqrt(excess))


def listing_slack(step: float, coef_norm: float, excess: float) -> float:
    """G of the module docstring, step 3, for the step to the next scale: its float32 rounding
    may lengthen it by up to 2 ulps, which is added."""
    e = step + 2 * FLOAT32_REL
    return e * e * (coef_norm + math.sqrt(excess)) ** 2


@dataclass(frozen=True)
class Walked:
    largest_step: float  # the largest step taken where no skip applied
    unlisted: float  # the most any listing fell short of G: an upper bound on what was missed


def walk(
    best: _Incumbent,
    lattice: Lattice,
    low: float,
    high: float,
    step: float,
    coef_norm: float,
    budget: int,
    max_slack: float,
) -> Walked:
    """Solve F at scales from ``low`` to ``high`` (module docstring, step 3), listing at each
    the codes that may be optimal before the next.

    After ``budget`` solves, the rest of the range is walked in ``budget`` more steps at the
    step that fits, listing more codes at each, up to ``max_slack`` of the incumbent's excess.
    If the optimum's codes were not listed at s1, f* >= B + listed - G: so a listing short of
    G by some amount can miss the optimum by at most that much (``unlisted``)."""
    # Never a scale of 0 (the decoder divides by it): the floor is positive (offer_unit_codes),
    # and below float32's smallest normal the stored weights would lose their precision.
    scale = max(np.float32(low * (1 - 2 * FLOAT32_REL)), np.finfo(np.float32).tiny)
    largest = step
    unlisted = 0.0
    solves = 0
    reach = WALK_REACH
    while float(scale) <= high:
        if solves == budget:  # the step would take too long here: widen it to fit
            step = max(step, (high / float(scale)) ** (1.0 / budget) - 1.0)
        # Below the incumbent's scale solves are costlier (the box clips the target): no reach.
        within = reach if scale >= best.scale else 1.0
        needed = listing_slack(step, coef_norm, best.excess)
        listed = min(needed, max_slack * best.excess)
        value = best.solve(lattice, scale, reach=within, slack=listed)
        solves += 1
        known = value if value is not None else within * best.excess
        # Nothing within reach: look further next time, to stride further; else start small.
        reach = min(reach * WALK_REACH, MAX_WALK_REACH) if value is None else WALK_REACH
        root_b = math.sqrt(best.excess)
        # Shrunk a little so that float32 rounding of the next scale never overshoots the skip.
        skip = (math.sqrt(known) - root_b) / (coef_norm + root_b) * (1 - 1e-6) - 2 * FLOAT32_REL
        if skip < step:
            largest = max(largest, step)
            unlisted = max(unlisted, needed - listed)
        nxt = np.float32(float(scale) * (1 + max(step, skip)))
        scale = nxt if nxt > scale else np.nextafter(scale, np.float32(np.inf))
    return Walked(largest, unlisted)


def rounding_gap(coef: np.ndarray, cov: np.ndarray, cov_inv: np.ndarray, excess: float) -> float:
    """How much better than ``excess`` (the result's, in float32) the real-valued optimum can be.

    The walk scored the optimum's codes m at sigma = float32(s*(m)): f(sigma, m) <= f* + alpha,
    alpha = (2^-24 s* |m|_C)^2 <= (2^-24 (|w|_C + sqrt(B)))^2. The stored weights round sigma m
    once more, by at most 2^-24 |sigma m_i| each, and |sigma m_i| <= |w_i| + sqrt((B + alpha)
    (C^-1)_ii), so they move the excess's square root by at most rho (below)."""
    coef_norm = math.sqrt(float(coef @ cov @ coef))
    alpha = (FLOAT32_REL * (coef_norm + math.sqrt(excess))) ** 2
    a = np.abs(coef) + np.sqrt((excess + alpha) * np.diag(cov_inv))
    rho = FLOAT32_REL * math.sqrt(float(a @ np.abs(cov) @ a))
    return alpha + 2 * rho * math.sqrt(excess + alpha) + rho * rho


def optimal_scale(offsets: np.ndarray, coef: np.ndarray, cov: np.ndarray) -> float:
    """s*(m): the scale minimising (s m - w)^T C (s m - w) for fixed offsets m."""
    m = offsets.astype(np.float64)
    return float(m @ cov @ coef) / float(m @ cov @ m)


def offer_unit_codes(best: _Incumbent) -> None:
    """Offer each single nonzero code, +-1 at one weight, at its own best scale.

    The naive pair can round every weight to the zero point (at low widths on skewed weights),
    and so can every coarse scale: zero weights would then be the incumbent, with excess
    w^T C w, where step 2's bounds prove nothing (the floor is 0). Since C w != 0, some
    coordinate i has (C w)_i != 0, and m = sign((C w)_i) e_i at its best scale has excess
    w^T C w - (C w)_i^2 / C_ii: strictly better, so the floor is positive."""
    gradient = best.cov @ best.coef
    for i in np.flatnonzero(gradient):
        m = np.zeros(best.coef.size, np.int64)
        m[i] = 1 if gradient[i] > 0 else -1
        best.offer(m, np.float32(optimal_scale(m, best.coef, best.cov)))


def search(coef: np.ndarray, cov: np.ndarray, bits: int, slack: float = WALK_SLACK) -> Search:
    """Codes, scale and zero point minimising the excess training MSE; see the module docstring.

    coef: (8,) float64 least-squares weights; cov: (8, 8) covariance of the training features.
    """
    coef = np.asarray(coef, dtype=np.float64)
    cov = np.asarray(cov, dtype=np.float64)
    qmax = 2**bits - 1
    if not np.any(coef):  # all weights zero: codes at the zero point are exact
        return Search(np.zeros(coef.size, np.uint8), np.float32(1), np.uint8(0), 0.0, 0.0, (1.0, 1.0), 1.0, 0)
    best = _Incumbent(coef, cov, qmax)
    codes, naive_scale, naive_zero = naive_codes(coef, bits)
    best.offer(codes.astype(np.int64) - naive_zero, naive_scale)
    offer_unit_codes(best)
    lattice = Lattice.of(cov)
    bounds = ScaleBounds.of(coef, cov, qmax)

    # Outward from the naive scale, where good codes are, so that the incumbent is tight
    # before the small scales, whose solves are the costliest (the box clips the target).
    # Below the floor nothing beats even the naive pair: those scales are skipped.
    naive_floor = bounds.floor(best.excess, float(naive_scale))
    steps = COARSE_STEPS_PER_OCTAVE
    for k in sorted(range(-COARSE_OCTAVES * steps, COARSE_OCTAVES * steps + 1), key=lambda k: (abs(k), k)):
        scale = np.float32(float(naive_scale) * 2.0 ** (k / steps))
        if float(scale) >= naive_floor:
            best.solve(lattice, scale)

    coef_norm = math.sqrt(float(coef @ cov @ coef))
    # An exact incumbent (weights on the grid) needs no walk: its gap is zero.
    walked = Walked(0.0, 0.0)
    scale_range = (float(best.scale), float(best.scale))
    if best.excess > 0:
        scale_range = (bounds.floor(best.excess, float(best.scale)), bounds.ceiling(best.excess))
        walked = walk(
            best,
            lattice,
            *scale_range,
            walk_step(coef_norm, best.excess, slack),
            coef_norm,
            WALK_BUDGET,
            MAX_LISTING_SLACK,
        )
    gap = rounding_gap(coef, cov, bounds.cov_inv, best.excess) + walked.unlisted if best.excess > 0 else 0.0
    assert best.offsets is not None, "the naive codes were offered first"
    offsets = best.offsets.astype(np.int64)
    zero_point = choose_zero_point(offsets, naive_zero, qmax)
    return Search(
        codes=(offsets + zero_point).astype(np.uint8),
        scale=best.scale,
        zero_point=np.uint8(zero_point),
        excess_mse=best.excess,
        gap_bound=gap,
        scale_range=scale_range,
        grid_ratio=1 + walked.largest_step,
        scales_tried=best.tried,
    )


def choose_zero_point(offsets: np.ndarray, preferred: int, qmax: int) -> int:
    """A zero point that puts every code in [0, qmax] (each gives the same weights): the one
    nearest ``preferred``."""
    low, high = max(0, -int(offsets.min())), min(qmax, qmax - int(offsets.max()))
    assert low <= high, "offsets wider than the code range"
    return min(max(preferred, low), high)
