"""How good a quantization is: accuracy against the float model and against naive rounding.

Evaluation only; the search lives in ``pipeline.quantization.quantizer``.
"""

from __future__ import annotations

import numpy as np

from pipeline.metrics import regression_metrics
from pipeline.quantization import quantizer
from pipeline.quantization.qparams import QuantParams, dequantize, predict
from pipeline.stages import data


def naive_weights(coef: np.ndarray, bits: int) -> np.ndarray:
    """What the reference projects ship: min-max scale, round to nearest (float intercept kept)."""
    codes, scale, zero_point = quantizer.naive_codes(coef, bits)
    return dequantize(codes, scale, zero_point)


def report(params: QuantParams, search: quantizer.Search, float_model, split: data.Split) -> dict:
    """Accuracy of the quantized model against the float model, what the search guarantees,
    and the naive baseline's accuracy."""
    float_test_pred = float_model.predict(split.X_test)
    float_test = regression_metrics(split.y_test, float_test_pred)
    float_train = regression_metrics(split.y_train, float_model.predict(split.X_train))
    test_pred = predict(params, split.X_test)
    test = regression_metrics(split.y_test, test_pred)
    trn = regression_metrics(split.y_train, predict(params, split.X_train))
    naive_pred = (
        split.X_test @ naive_weights(float_model.coef_, params.bits).astype(np.float64) + float_model.intercept_
    )
    return {
        "test": test,
        "train": trn,
        "float_test_r2": float_test["r2"],
        "test_r2_change": test["r2"] - float_test["r2"],
        "train_mse_increase_relative": trn["mse"] / float_train["mse"] - 1.0,
        "max_abs_test_prediction_change": float(np.max(np.abs(test_pred - float_test_pred))),
        "max_abs_coef_error": float(np.max(np.abs(params.weights() - float_model.coef_))),
        "naive_round_to_nearest_test_r2": regression_metrics(split.y_test, naive_pred)["r2"],
        "search": {
            "excess_train_mse": search.excess_mse,
            "certified_gap_bound": search.gap_bound,
            "certified_scale_range": list(search.scale_range),
            "grid_ratio": search.grid_ratio,
            "scales_tried": search.scales_tried,
        },
    }
