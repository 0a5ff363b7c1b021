"""The quantizer's search on synthetic problems: no dataset, no network.

The claims under test, at every width: the result is no worse than naive rounding, no worse
than the grid this project shipped before at any of its scales with any zero point, and the
optimum over every scale, zero point and code vector up to float32 rounding: its certified gap
is the rounding bound alone (checked by enumeration where that is feasible, and against a
dense grid of scales elsewhere).
"""

from __future__ import annotations

import math
import multiprocessing

import numpy as np
import pytest

from helpers import ill_conditioned_problem, random_regression
from pipeline.graphs import tolerances
from pipeline.quantization import lattice, quantizer
from pipeline.quantization.qparams import dequantize
from pipeline.reports import optimality

# Random problems per width (helpers.random_regression), each also checked against every scale
# of the previous grid with every zero point.
SWEEP_PROBLEMS = 200


def exact_up_to_rounding(result: quantizer.Search, coef, cov) -> bool:
    """The certified gap is float32 rounding alone: every code vector that could be optimal was
    listed and scored (quantizer module docstring, step 3)."""
    rounding = quantizer.rounding_gap(coef, cov, np.linalg.inv(cov), result.excess_mse)
    return result.gap_bound <= rounding * (1 + tolerances.COST_RTOL)


def naive_excess(coef, cov, bits):
    codes, scale, zero = quantizer.naive_codes(coef, bits)
    return quantizer.excess_mse(dequantize(codes, scale, zero), coef, cov)


def float32_slack(weights, cov, excess) -> float:
    """How much two excesses may differ by float32 rounding alone: each stored weight is within
    2^-24 of itself relatively, which moves (w_hat - w)^T C (w_hat - w) by at most this, for
    either of the two results compared."""
    a = np.abs(np.asarray(weights, dtype=np.float64))
    spread = math.sqrt(float(a @ np.abs(cov) @ a)) * quantizer.FLOAT32_REL
    return 2 * (2 * math.sqrt(excess) * spread + spread**2) + tolerances.COST_RTOL * excess


def beats_on_any_scale(coef, cov, bits, scales, excess, offsets=None, slack=0.0) -> float | None:
    """A scale among ``scales`` where some zero point and codes do better than ``excess`` by more
    than ``slack`` (None if there is none). Every zero point is tried, so this covers any grid
    over them. ``offsets`` (the result's q - z) only seeds each exact search."""
    lat = lattice.Lattice.of(cov)
    target = excess - slack
    for scale in scales:
        s = float(np.float32(scale))
        found = lat.closest_offsets(coef / s, 2**bits - 1, bound=target / (s * s), start=offsets)
        if found is not None:
            weights = dequantize(found[0].astype(np.float32), np.float32(s), 0)
            if quantizer.excess_mse(weights, coef, cov) < target:
                return s
    return None


def previous_scales(coef, bits):
    """The scale grid this project shipped before: 400 values from 0.5x to 2.5x min-max."""
    lo, hi = min(float(coef.min()), 0.0), max(float(coef.max()), 0.0)
    return (hi - lo) / (2**bits - 1) * np.geomspace(0.5, 2.5, 400)


def check_result(result: quantizer.Search, coef, cov, bits):
    qmax = 2**bits - 1
    assert result.codes.dtype == np.uint8 and result.codes.shape == coef.shape
    assert int(result.codes.max()) <= qmax and int(result.zero_point) <= qmax
    assert isinstance(result.scale, np.float32) and result.scale > 0
    weights = dequantize(result.codes, result.scale, result.zero_point)
    assert quantizer.excess_mse(weights, coef, cov) == result.excess_mse


@pytest.mark.parametrize("seed", range(12))
def test_at_2_bits_n_8_the_result_is_the_exhaustive_optimum(seed):
    """Every code vector and zero point at 2 bits (4^8 x 4), each with its own real optimal
    scale: the true optimum, on a covariance with condition number 1e7 (like the real one)."""
    coef, cov = ill_conditioned_problem(seed)
    result = quantizer.search(coef, cov, 2)
    check_result(result, coef, cov, 2)
    optimum = optimality.exhaustive_optimum(coef, cov, 2)
    assert result.excess_mse <= optimum + result.gap_bound + tolerances.COST_RTOL * optimum  # the certificate
    assert exact_up_to_rounding(result, coef, cov)  # the promise


def test_at_3_bits_n_8_the_result_is_the_exhaustive_optimum():
    coef, cov = ill_conditioned_problem(1001)
    result = quantizer.search(coef, cov, 3)
    optimum = optimality.exhaustive_optimum(coef, cov, 3)
    assert result.excess_mse <= optimum + result.gap_bound + tolerances.COST_RTOL * optimum
    assert exact_up_to_rounding(result, coef, cov)


def test_when_no_coarse_scale_beats_zero_weights_the_search_still_finds_the_optimum():
    """Weights no code vector can point along: C = I + 1e4 (I - u u'), u = w / |w|, penalises
    every direction but w's own. At 2 bits every coarse scale's best codes are all zero, whose
    excess w'Cw proves no scale floor; this once divided by a scale of 0 (ZeroDivisionError)."""
    coef = np.sqrt([2.0, 3.0, 5.0, 7.0])
    u = coef / np.linalg.norm(coef)
    cov = np.eye(4) + 1e4 * (np.eye(4) - np.outer(u, u))
    result = quantizer.search(coef, cov, 2)
    check_result(result, coef, cov, 2)
    optimum = optimality.exhaustive_optimum(coef, cov, 2)
    assert result.excess_mse < float(coef @ cov @ coef)  # better than zero weights
    assert result.excess_mse <= optimum + result.gap_bound + tolerances.COST_RTOL * optimum
    assert exact_up_to_rounding(result, coef, cov)


def sweep_failures(args: tuple[int, int]) -> list[str]:
    """What goes wrong for one random regression problem at one width (empty: nothing)."""
    seed, bits = args
    coef, cov = random_regression(seed)
    result = quantizer.search(coef, cov, bits)
    failures = []
    if result.excess_mse > naive_excess(coef, cov, bits):
        failures.append(f"seed {seed}: worse than naive rounding")
    offsets = result.codes.astype(np.int64) - int(result.zero_point)
    slack = float32_slack(dequantize(result.codes, result.scale, result.zero_point), cov, result.excess_mse)
    better = beats_on_any_scale(coef, cov, bits, previous_scales(coef, bits), result.excess_mse, offsets, slack)
    if better is not None:
        failures.append(f"seed {seed}: the previous grid does better at scale {better:.6g}")
    if not exact_up_to_rounding(result, coef, cov):
        failures.append(f"seed {seed}: certified only to {result.gap_bound / result.excess_mse:.2g} of the excess")
    return failures


@pytest.mark.parametrize("bits", range(2, 9))
def test_seed_sweep_never_worse_than_naive_or_the_previous_grid(bits):
    """SWEEP_PROBLEMS random regressions shaped like this data, on both cores: never worse than
    naive rounding or the previous grid, and certified optimal up to float32 rounding."""
    with multiprocessing.get_context("fork").Pool(2) as pool:
        found = pool.map(sweep_failures, [(s, bits) for s in range(SWEEP_PROBLEMS)])
    assert [f for failures in found for f in failures] == []


@pytest.mark.parametrize("bits", [2, 4, 6, 8])
def test_no_scale_on_a_dense_grid_beats_the_result_beyond_its_gap(bits):
    """A grid 1/4x to 4x min-max, 512 scales per octave, every zero point at each."""
    for seed in range(10):
        coef, cov = random_regression(seed)
        result = quantizer.search(coef, cov, bits)
        dense = optimality.best_over_scales(coef, cov, bits, optimality.dense_grid(coef, bits, per_octave=512))
        assert result.excess_mse <= dense + result.gap_bound + tolerances.COST_RTOL * dense


def test_weights_already_on_a_grid_quantize_exactly():
    coef = np.array([3, -2, 0, 1, 5, -4, 2, 1], dtype=np.float64) * 0.25
    result = quantizer.search(coef, np.eye(8) + 0.1, 4)
    assert result.excess_mse == 0.0 and result.gap_bound == 0.0
    np.testing.assert_array_equal(dequantize(result.codes, result.scale, result.zero_point), coef)


def test_all_zero_weights_quantize_exactly():
    result = quantizer.search(np.zeros(8), np.eye(8), 8)
    assert result.excess_mse == 0.0 and not np.any(dequantize(result.codes, result.scale, result.zero_point))


def test_the_certified_range_holds_the_exhaustive_optimum_scale():
    """Exhaustive search at 2 bits: the optimum's own scale s*(m) lies in the range the search
    certified, and nothing outside it could have won (the floor and ceiling are valid)."""
    coef, cov = ill_conditioned_problem(5)
    result = quantizer.search(coef, cov, 2)
    low, high = result.scale_range
    m = result.codes.astype(np.int64) - int(result.zero_point)
    assert low <= quantizer.optimal_scale(m, coef, cov) <= high
    below = optimality.best_over_scales(coef, cov, 2, np.geomspace(low / 8, low, 64, endpoint=False))
    above = optimality.best_over_scales(coef, cov, 2, np.geomspace(high, high * 8, 64)[1:])
    naive = naive_excess(coef, cov, 2)
    # best_over_scales starts from the naive pair: it returns that unless a scale beats it, and
    # nothing can beat the optimum, which is at least the result less its gap.
    optimum_floor = (result.excess_mse - result.gap_bound) * (1 - tolerances.COST_RTOL)
    assert below >= min(optimum_floor, naive)
    assert above >= min(optimum_floor, naive)
