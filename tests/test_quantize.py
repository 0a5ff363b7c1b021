"""Unit tests of the quantizer on synthetic data: no dataset, no network."""
from __future__ import annotations

import itertools

import numpy as np
import pytest

from pipeline import config, quantize
from pipeline.errors import UserError


def brute_force_codes(gram, target, qmax):
    best, best_cost = None, np.inf
    for q in itertools.product(range(qmax + 1), repeat=target.size):
        d = np.array(q) - target
        cost = d @ gram @ d
        if cost < best_cost:
            best, best_cost = np.array(q), cost
    return best, best_cost


@pytest.mark.parametrize("seed", range(12))
def test_closest_codes_is_the_exact_integer_least_squares_optimum(seed):
    rng = np.random.default_rng(seed)
    n, qmax = 4, 7
    A = rng.normal(size=(6, n)) @ np.diag(rng.uniform(0.1, 5, n))
    gram = A.T @ A
    target = rng.uniform(-2, qmax + 2, n)  # some coordinates outside the box: clipping matters
    got = quantize.closest_codes(gram, target, qmax).astype(float)
    _, best_cost = brute_force_codes(gram, target, qmax)
    d = got - target
    assert d @ gram @ d == pytest.approx(best_cost, rel=1e-9, abs=1e-12)


def synthetic_regression(seed=0, n=4000):
    """Features with California-like scales (one huge, two collinear), and a noisy linear target."""
    rng = np.random.default_rng(seed)
    scales = np.array([2, 12, 2, 0.4, 1100, 10, 2, 2])
    means = np.array([4, 28, 5, 1, 1400, 3, 35, -120])
    X = rng.normal(size=(n, 8)) * scales + means
    X[:, 7] = -X[:, 6] * 0.9 + rng.normal(size=n) * 0.8 - 88  # Longitude tracks Latitude
    w = np.array([0.45, 0.01, -0.12, 0.78, -2e-6, -0.0035, -0.42, -0.43])
    y = X @ w - 37 + rng.normal(size=n) * 0.7
    from sklearn.linear_model import LinearRegression
    model = LinearRegression().fit(X, y)
    return X, y, model


@pytest.mark.parametrize("bits", [2, 3, 4, 6, 8])
def test_round_trip_stores_only_codes_one_scale_one_zero_point(bits):
    X, y, model = synthetic_regression()
    params = quantize.quantize(model.coef_, X, y, bits)
    assert params.codes.dtype == np.uint8 and params.codes.shape == (8,)
    assert params.codes.max() <= 2 ** bits - 1
    assert isinstance(params.scale, np.float32) and np.ndim(params.scale) == 0
    assert isinstance(params.zero_point, np.uint8)
    assert isinstance(params.intercept, np.float32)
    # Dequantization is DequantizeLinear's float32 arithmetic, bit for bit.
    expected = (params.codes.astype(np.float32) - np.float32(params.zero_point)) * params.scale
    np.testing.assert_array_equal(params.weights(), expected)
    stored = quantize.params_dict(params)
    assert set(stored) == {"bits", "codes", "scale", "zero_point", "intercept", "dequantized_coef"}


@pytest.mark.parametrize("bits", [3, 4, 8])
def test_never_worse_than_round_to_nearest_with_the_same_bias_correction(bits):
    X, y, model = synthetic_regression(seed=1)
    cov = np.cov(X, rowvar=False, bias=True)
    params = quantize.quantize(model.coef_, X, y, bits)
    naive = quantize.naive_quantize(model.coef_, bits)
    ours = quantize.excess_mse(params.weights(), model.coef_, cov)
    theirs = quantize.excess_mse(naive.weights(), model.coef_, cov)
    assert ours <= theirs + 1e-15


@pytest.mark.parametrize("seed", [2, 4])
def test_error_bound_at_8_bits_on_synthetic_data(seed):
    """Excess training MSE <= (s/2)^2 * sum|C_ij|: what round-to-nearest on the chosen grid
    guarantees, which the exact optimum on that grid can only improve on."""
    X, y, model = synthetic_regression(seed=seed)
    params = quantize.quantize(model.coef_, X, y, 8)
    cov = np.cov(X, rowvar=False, bias=True)
    float_mse = np.mean((model.predict(X) - y) ** 2)
    quant_mse = np.mean((quantize.predict(params, X) - y) ** 2)
    bound = (float(params.scale) / 2) ** 2 * np.abs(cov).sum()
    assert quant_mse - float_mse <= bound
    assert quant_mse <= float_mse * 1.005  # 0.5% here; the real data's 0.1% is an integration test
    # The identity the method relies on: excess MSE is the covariance quadratic form.
    assert quant_mse - float_mse == pytest.approx(
        quantize.excess_mse(params.weights(), model.coef_, cov), rel=1e-3, abs=1e-7)


def test_intercept_is_refit_after_rounding():
    X, y, model = synthetic_regression(seed=3)
    params = quantize.quantize(model.coef_, X, y, 3)
    # Least-squares intercept: residuals average to zero (to float32 precision of the intercept).
    assert abs(np.mean(y - quantize.predict(params, X))) < 1e-4


@pytest.mark.parametrize("value,expected", [(None, 8), ("", 8), ("2", 2), ("8", 8), (" 5 ", 5), (3, 3)])
def test_parse_bits_accepts_2_to_8(value, expected):
    assert config.parse_bits(value) == expected


@pytest.mark.parametrize("value,match", [("1", "out of range"), ("9", "out of range"), ("16", "out of range"),
                                         ("x", "not a whole number"), ("8.5", "not a whole number")])
def test_parse_bits_rejects_with_one_line(value, match):
    with pytest.raises(UserError, match=match) as info:
        config.parse_bits(value)
    assert "\n" not in str(info.value) and "2 to 8" in str(info.value)


def test_quantize_stage_rejects_bad_bits_without_traceback(tmp_path):
    from conftest import run_module
    result = run_module("pipeline.quantize", env={"BITS": "12", "ARTIFACTS": str(tmp_path)})
    assert result.returncode == 2
    assert result.stderr.decode().strip().count("\n") == 0
    assert b"BITS=12" in result.stderr and b"Traceback" not in result.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("bits", ["9", "0", "abc"])
def test_make_rejects_bad_bits_in_one_line(bits, tmp_path):
    from conftest import make
    result = make("all", f"BITS={bits}", artifacts=tmp_path)
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and f"BITS={bits} is invalid" in lines[0]
    assert list(tmp_path.iterdir()) == []
