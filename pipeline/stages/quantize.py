"""Stage 3: quantize the coefficient vector to BITS-bit codes with ONE scale and ONE zero point.

    python -m pipeline.stages.quantize --split artifacts/split.npz --model artifacts/model.joblib \\
        --bits 8 --params artifacts/quant_params.joblib --report artifacts/quant_params.json

What is stored: uint8 codes q, a float32 scale s, a uint8 zero point z and a float32
intercept; the weights are s * (q - z), exactly as ONNX DequantizeLinear computes them
(``pipeline.quantization.qparams``). The codes, scale and zero point minimise the training MSE of the
dequantized model (``pipeline.quantization.quantizer`` says how, and what is guaranteed); the intercept
is then refitted: b = mean(y) - mean(X) @ w_hat.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import joblib
import numpy as np

from housing_runtime.errors import UserError, run_cli
from pipeline import artifacts, config
from pipeline.quantization import quant_eval, quantizer
from pipeline.quantization.qparams import QuantParams, params_dict, save_params
from pipeline.stages import data


def fit_intercept(weights: np.ndarray, X: np.ndarray, y: np.ndarray) -> np.float32:
    """The least-squares intercept for fixed weights: corrects the bias rounding introduced."""
    return np.float32(y.mean() - X.mean(axis=0) @ weights.astype(np.float64))


def quantize(
    coef: np.ndarray, X_train: np.ndarray, y_train: np.ndarray, bits: int
) -> tuple[QuantParams, quantizer.Search]:
    """The stored parameters for least-squares weights coef fitted on (X_train, y_train)."""
    cov = np.cov(X_train, rowvar=False, bias=True)
    found = quantizer.search(coef, cov, bits)
    params = QuantParams(
        codes=found.codes, scale=found.scale, zero_point=found.zero_point, intercept=np.float32(0), bits=bits
    )
    intercept = fit_intercept(params.weights(), X_train, y_train)
    return QuantParams(found.codes, found.scale, found.zero_point, intercept, bits), found


def load_model(path: Path):
    """The trained model, or one line saying why this file is not one."""
    try:
        model = joblib.load(path)
    except FileNotFoundError:
        raise UserError(f"{path} is missing; run `make all` (or `make train`) first") from None
    except Exception as err:  # a file that is not a joblib pickle fails in many ways
        raise UserError(
            f"{path} cannot be read as a model ({type(err).__name__}); give the model.joblib that `make train` writes"
        ) from None
    if np.shape(getattr(model, "coef_", ())) != (config.N_FEATURES,):
        raise UserError(
            f"{path} is not a linear regression fitted on {config.N_FEATURES} features; "
            "give the model.joblib that `make train` writes"
        )
    return model


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pipeline.stages.quantize", description=__doc__.splitlines()[0])
    parser.add_argument("--split", type=Path, required=True, help="input: the split from pipeline.stages.data")
    parser.add_argument("--model", type=Path, required=True, help="input: the model from pipeline.stages.train")
    parser.add_argument("--bits", default=str(config.DEFAULT_BITS), help="code width, 2 to 8 (default 8)")
    parser.add_argument("--params", type=Path, required=True, help="output: the parameters (joblib)")
    parser.add_argument("--report", type=Path, required=True, help="output: parameters and metrics (JSON)")
    args = parser.parse_args(argv)
    bits = config.parse_bits(args.bits)
    split = data.load_split(args.split)
    float_model = load_model(args.model)
    started = time.perf_counter()
    params, found = quantize(float_model.coef_, split.X_train, split.y_train, bits)
    seconds = time.perf_counter() - started
    stats = quant_eval.report(params, found, float_model, split)
    prov = artifacts.provenance("quantize", {"split": args.split, "model": args.model})
    save_params(args.params, params, prov)
    artifacts.write_json(args.report, {**params_dict(params), "metrics": stats, "provenance": prov})
    print(
        f"quantize: {bits} bits, scale {float(params.scale):.6g}, zero point {int(params.zero_point)}: "
        f"train MSE +{100 * stats['train_mse_increase_relative']:.4f}% "
        f"(the optimum over every scale, zero point and code vector, certified to within "
        f"{100 * found.gap_bound / found.excess_mse:.2g}% of that), "
        f"test R2 {stats['test']['r2']:.4f} (float {stats['float_test_r2']:.4f}, "
        f"naive rounding {stats['naive_round_to_nearest_test_r2']:.4f}), "
        f"search {seconds:.2f} s over {found.scales_tried} scales"
    )
    return 0


if __name__ == "__main__":
    run_cli(main, "pipeline.stages.quantize")
