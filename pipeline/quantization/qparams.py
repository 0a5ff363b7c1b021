"""The stored quantization: uint8 codes, one float32 scale, one uint8 zero point, a float32
intercept. How it is dequantized, written and read; nothing about how it is chosen."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import joblib
import numpy as np

from housing_runtime.files import atomic_path


@dataclass(frozen=True)
class QuantParams:
    codes: np.ndarray  # (8,) uint8, each in [0, 2**bits - 1]
    scale: np.float32
    zero_point: np.uint8
    intercept: np.float32
    bits: int

    def weights(self) -> np.ndarray:
        """Dequantized weights, float32, bit-identical to ONNX DequantizeLinear's output."""
        return dequantize(self.codes, self.scale, self.zero_point)


def dequantize(codes: np.ndarray, scale: np.float32, zero_point) -> np.ndarray:
    # DequantizeLinear: (float32(q) - float32(z)) * scale, all in float32.
    return (codes.astype(np.float32) - np.float32(zero_point)) * np.float32(scale)


def predict(params: QuantParams, X: np.ndarray) -> np.ndarray:
    """Predictions of the dequantized model, in float64."""
    return X @ params.weights().astype(np.float64) + float(params.intercept)


def params_dict(params: QuantParams) -> dict:
    """Everything that is stored, as plain numbers: what the uint8 ONNX model holds."""
    return {
        "bits": params.bits,
        "codes": params.codes.tolist(),
        "scale": float(params.scale),
        "zero_point": int(params.zero_point),
        "intercept": float(params.intercept),
        "dequantized_coef": [float(v) for v in params.weights()],
    }


def save_params(path: Path, params: QuantParams, provenance: dict) -> None:
    """Write the parameters with their exact dtypes (joblib), atomically."""
    with atomic_path(path) as tmp:
        joblib.dump({**params_dict(params), "codes": params.codes, "provenance": provenance}, tmp)


def load_params(path: Path) -> QuantParams:
    """The parameters save_params stored, with their exact dtypes."""
    stored = joblib.load(path)
    return QuantParams(
        codes=np.asarray(stored["codes"], dtype=np.uint8),
        scale=np.float32(stored["scale"]),
        zero_point=np.uint8(stored["zero_point"]),
        intercept=np.float32(stored["intercept"]),
        bits=int(stored["bits"]),
    )
