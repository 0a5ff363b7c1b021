"""Regression metrics shared by every stage, computed in float64 from predictions."""

from __future__ import annotations

import numpy as np


def regression_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """R², MSE and RMSE of predictions (any float dtype; computed in float64)."""
    y_true = np.asarray(y_true, dtype=np.float64).ravel()
    y_pred = np.asarray(y_pred, dtype=np.float64).ravel()
    mse = float(np.mean((y_true - y_pred) ** 2))
    ss_tot = float(np.sum((y_true - y_true.mean()) ** 2))
    return {"r2": 1.0 - mse * y_true.size / ss_tot, "mse": mse, "rmse": float(np.sqrt(mse))}
