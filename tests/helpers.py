"""Synthetic artifacts for unit tests: ONNX models from random weights, no dataset needed."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from sklearn.linear_model import LinearRegression

from pipeline import artifacts, config, export, manifest, quantize


def random_params(seed: int = 0, bits: int = 8) -> quantize.QuantParams:
    rng = np.random.default_rng(seed)
    return quantize.QuantParams(codes=rng.integers(0, 2 ** bits, size=8).astype(np.uint8),
                                scale=np.float32(rng.uniform(1e-3, 1e-2)),
                                zero_point=np.uint8(rng.integers(0, 2 ** bits)),
                                intercept=np.float32(rng.normal() * 10), bits=bits)


def california_like_rows(n: int = 500, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    scales = np.array([2, 12, 2, 0.4, 1100, 10, 2, 2])
    means = np.array([4, 28, 5, 1, 1400, 3, 35, -120])
    return (rng.normal(size=(n, 8)) * scales + means).astype(np.float32)


def linear_model(coef: np.ndarray, intercept: float) -> LinearRegression:
    model = LinearRegression()
    model.coef_, model.intercept_, model.n_features_in_ = np.asarray(coef, dtype=np.float64), float(intercept), 8
    return model


def write_synthetic_artifacts(out: Path, seed: int = 0) -> Path:
    """A runtime-ready artifacts folder: three models, sample.csv and manifest.json."""
    params = random_params(seed)
    out.mkdir(parents=True, exist_ok=True)
    dequant = linear_model(params.weights(), params.intercept)
    rng = np.random.default_rng(seed + 1)
    models = {
        "float": export.convert_sklearn(linear_model(rng.normal(size=8) * 0.3, -37.0)),
        "dequant": export.convert_sklearn(dequant),
        "uint8": export.build_uint8_model(params),
    }
    for variant, model in models.items():
        export.add_metadata(model, variant, 8, {"r2": 0.0}, {})
        artifacts.write_bytes(out / config.ONNX_NAMES[variant], model.SerializeToString())
    X = california_like_rows(5, seed)
    lines = [",".join(config.FEATURE_NAMES)] + [",".join(repr(float(v)) for v in row) for row in X]
    (out / "sample.csv").write_text("\n".join(lines) + "\n")
    files = [out / n for n in config.ONNX_NAMES.values()] + [out / "sample.csv"]
    artifacts.write_json(out / artifacts.MANIFEST_NAME, manifest.build(files))
    return out


def write_csv(path: Path, header: list[str], rows: list[list]) -> Path:
    path.write_text("\n".join([",".join(header)] + [",".join(map(str, r)) for r in rows]) + "\n")
    return path


def records(X: np.ndarray) -> list[dict]:
    return [dict(zip(config.FEATURE_NAMES, map(float, row), strict=True)) for row in X]


def dumps_lines(recs: list[dict]) -> str:
    return "".join(json.dumps(r) + "\n" for r in recs)
