"""The quantize stage on synthetic data: what it stores, how it is read back, its intercept,
and its user-facing errors. No dataset, no network. (The search itself: test_quantizer.py.)"""

from __future__ import annotations

import numpy as np
import pytest

from helpers import make, run_module, synthetic_regression
from housing_runtime.errors import UserError
from pipeline import config
from pipeline.quantization import quantizer
from pipeline.quantization.qparams import load_params, params_dict, predict, save_params
from pipeline.stages import quantize


@pytest.mark.parametrize("bits", [2, 3, 4, 6, 8])
def test_stores_only_codes_one_scale_one_zero_point_and_reads_them_back_exactly(bits, tmp_path):
    X, y, model = synthetic_regression()
    params, _ = quantize.quantize(model.coef_, X, y, bits)
    assert params.codes.dtype == np.uint8 and params.codes.shape == (8,)
    assert params.codes.max() <= 2**bits - 1
    assert isinstance(params.scale, np.float32) and np.ndim(params.scale) == 0
    assert isinstance(params.zero_point, np.uint8) and isinstance(params.intercept, np.float32)
    # Dequantization is DequantizeLinear's float32 arithmetic, bit for bit.
    expected = (params.codes.astype(np.float32) - np.float32(params.zero_point)) * params.scale
    np.testing.assert_array_equal(params.weights(), expected)
    assert set(params_dict(params)) == {"bits", "codes", "scale", "zero_point", "intercept", "dequantized_coef"}

    path = tmp_path / "params.joblib"
    save_params(path, params, {"stage": "test"})
    loaded = load_params(path)
    assert loaded.bits == bits
    for field in ("codes", "scale", "zero_point", "intercept"):
        got, want = getattr(loaded, field), getattr(params, field)
        assert type(got) is type(want) and np.asarray(got).dtype == np.asarray(want).dtype, field
        np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(predict(loaded, X), predict(params, X))
    assert [p.name for p in tmp_path.iterdir()] == ["params.joblib"]  # no temporary file left


def test_the_excess_is_the_training_mse_increase():
    """The identity the method relies on: refitting the intercept makes the training MSE
    increase exactly the covariance quadratic form of the weight error."""
    X, y, model = synthetic_regression(seed=2)
    params, found = quantize.quantize(model.coef_, X, y, 6)
    cov = np.cov(X, rowvar=False, bias=True)
    increase = np.mean((predict(params, X) - y) ** 2) - np.mean((model.predict(X) - y) ** 2)
    assert increase == pytest.approx(found.excess_mse, rel=1e-3, abs=1e-7)
    assert found.excess_mse == quantizer.excess_mse(params.weights(), model.coef_, cov)


def test_intercept_is_refit_after_rounding():
    X, y, model = synthetic_regression(seed=3)
    params, _ = quantize.quantize(model.coef_, X, y, 3)
    # Least-squares intercept: residuals average to zero (to float32 precision of the intercept).
    assert abs(np.mean(y - predict(params, X))) < 1e-4


@pytest.mark.parametrize("value,expected", [(None, 8), ("", 8), ("2", 2), ("8", 8), (" 5 ", 5), (3, 3)])
def test_parse_bits_accepts_2_to_8(value, expected):
    assert config.parse_bits(value) == expected


@pytest.mark.parametrize(
    "value,match",
    [
        ("1", "out of range"),
        ("9", "out of range"),
        ("16", "out of range"),
        ("x", "not a whole number"),
        ("8.5", "not a whole number"),
    ],
)
def test_parse_bits_rejects_with_one_line(value, match):
    with pytest.raises(UserError, match=match) as info:
        config.parse_bits(value)
    assert "\n" not in str(info.value) and "2 to 8" in str(info.value)


def test_quantize_stage_rejects_bad_bits_without_traceback(tmp_path):
    out = tmp_path / "out"
    result = run_module(
        "pipeline.stages.quantize",
        "--split",
        str(tmp_path / "split.npz"),
        "--model",
        str(tmp_path / "model.joblib"),
        "--bits",
        "12",
        "--params",
        str(out / "p.joblib"),
        "--report",
        str(out / "p.json"),
    )
    assert result.returncode == 2
    assert result.stderr.decode().strip().count("\n") == 0
    assert b"BITS=12" in result.stderr and b"Traceback" not in result.stderr
    assert not out.exists()


def test_quantize_stage_names_a_missing_input(tmp_path):
    result = run_module(
        "pipeline.stages.quantize",
        "--split",
        str(tmp_path / "split.npz"),
        "--model",
        str(tmp_path / "model.joblib"),
        "--bits",
        "8",
        "--params",
        str(tmp_path / "p.joblib"),
        "--report",
        str(tmp_path / "p.json"),
    )
    err = result.stderr.decode()
    assert result.returncode == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert "split.npz is missing" in err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("bits", ["9", "0", "abc"])
def test_make_rejects_bad_bits_in_one_line(bits, tmp_path):
    result = make("all", f"BITS={bits}", artifacts=tmp_path)
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and f"BITS={bits} is invalid" in lines[0]
    assert list(tmp_path.iterdir()) == []
