"""The exact inner solvers against enumeration: no dataset, no network."""

from __future__ import annotations

import numpy as np
import pytest

from helpers import brute_force_codes, ill_conditioned_problem
from pipeline.graphs import tolerances
from pipeline.quantization import lattice


def random_gram(rng, n):
    A = rng.normal(size=(n + 2, n)) @ np.diag(rng.uniform(0.1, 5, n))
    return A.T @ A


def brute_force_offsets(gram, target, span):
    """min over integer m with max(m) - min(m) <= span and |m_i| <= span, by enumeration."""
    n = target.size
    m = np.indices((2 * span + 1,) * n).reshape(n, -1).T - span
    m = m[m.max(axis=1) - m.min(axis=1) <= span]
    d = m - target
    return float(np.min(np.einsum("ij,jk,ik->i", d, gram, d)))


@pytest.mark.parametrize("seed", range(12))
def test_closest_codes_is_the_exact_box_optimum(seed):
    rng = np.random.default_rng(seed)
    n, qmax = 4, 7
    gram = random_gram(rng, n)
    target = rng.uniform(-2, qmax + 2, n)  # some coordinates outside the box: clipping matters
    got = lattice.closest_codes(gram, target, qmax).astype(float)
    _, best_cost = brute_force_codes(gram, target, qmax)
    d = got - target
    assert d @ gram @ d == pytest.approx(best_cost, rel=tolerances.COST_RTOL, abs=1e-12)


@pytest.mark.parametrize("seed", range(20))
def test_closest_offsets_is_the_best_over_every_zero_point(seed):
    """One search under the span constraint equals the best box search over every zero point,
    and enumeration over every offset vector."""
    rng = np.random.default_rng(100 + seed)
    n, span = 4, int(rng.integers(1, 6))
    gram = random_gram(rng, n)
    target = rng.uniform(-span - 2, span + 2, n)
    m, cost = lattice.Lattice.of(gram).closest_offsets(target, span)
    assert m.max() - m.min() <= span and np.abs(m).max() <= span
    d = m - target
    assert cost == pytest.approx(float(d @ gram @ d), rel=tolerances.COST_RTOL)
    per_zero_point = []
    for z in range(span + 1):
        q = lattice.closest_codes(gram, target + z, span).astype(float)
        e = q - z - target
        per_zero_point.append(float(e @ gram @ e))
    assert cost == pytest.approx(min(per_zero_point), rel=tolerances.COST_RTOL, abs=1e-12)
    assert cost == pytest.approx(brute_force_offsets(gram, target, span), rel=tolerances.COST_RTOL, abs=1e-12)


@pytest.mark.parametrize("seed", range(5))
def test_closest_offsets_on_an_ill_conditioned_gram_at_n_8(seed):
    """Condition number 1e7, like the real covariance: the exact search still matches
    enumeration of all 8-dimensional offset vectors (span 2: 5^8 candidates)."""
    _, cov = ill_conditioned_problem(seed)
    rng = np.random.default_rng(seed)
    span = 2
    target = rng.uniform(-span - 1, span + 1, 8)
    _, cost = lattice.Lattice.of(cov).closest_offsets(target, span)
    assert cost == pytest.approx(brute_force_offsets(cov, target, span), rel=1e-7, abs=1e-15)


def test_a_bound_below_the_optimum_finds_nothing_and_a_start_is_only_a_seed():
    rng = np.random.default_rng(7)
    gram = random_gram(rng, 5)
    target = rng.uniform(-3, 3, 5)
    lat = lattice.Lattice.of(gram)
    m, cost = lat.closest_offsets(target, 4)
    assert lat.closest_offsets(target, 4, bound=cost) is None  # strictly better only
    worse_start = np.clip(m + 1, -4, 4)
    m2, cost2 = lat.closest_offsets(target, 4, start=worse_start)
    assert cost2 == pytest.approx(cost, rel=tolerances.COST_RTOL)
    infeasible = np.array([-4, 4, 0, 0, 0])  # span 8 > 4: ignored, not taken as the incumbent
    _, cost3 = lat.closest_offsets(target, 4, start=infeasible)
    assert cost3 == pytest.approx(cost, rel=tolerances.COST_RTOL)
