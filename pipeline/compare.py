"""`make compare`: size and accuracy of every variant, each measured by running the artifact.

    python -m pipeline.compare     # prints a Markdown table; writes compare.json and compare.md

Weight payload is what the numbers themselves take: coefficients and intercept, plus the
scale and zero point where quantized; not the file's framing, names or metadata.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import joblib
import numpy as np
import onnx
import onnxruntime as ort
from onnx import numpy_helper

from pipeline import artifacts, config, data, quantize, train, verify
from pipeline.errors import UserError, run_cli
from pipeline.metrics import regression_metrics

JSON_NAME, MD_NAME = "compare.json", "compare.md"
# Numeric payload dtypes; int64 tensors in these graphs are axes and shapes, not weights.
_PAYLOAD_DTYPES = (np.float32, np.float64, np.uint8)


def onnx_payload_bytes(path: Path) -> int:
    """Bytes of weight data in an ONNX file: initializers and float-list attributes
    (skl2onnx's LinearRegressor keeps its coefficients and intercept as attributes)."""
    model = onnx.load(str(path))
    arrays = [numpy_helper.to_array(t) for t in model.graph.initializer]
    total = sum(a.nbytes for a in arrays if a.dtype in _PAYLOAD_DTYPES)
    for node in model.graph.node:
        for attr in node.attribute:
            total += 4 * len(attr.floats)  # ONNX float attributes are float32
    return total


def sklearn_row(path: Path, X: np.ndarray) -> tuple[np.ndarray, int]:
    model = joblib.load(path)
    payload = np.asarray(model.coef_).nbytes + np.asarray(model.intercept_, dtype=np.float64).nbytes
    return model.predict(X), payload


def quant_params_row(path: Path, X: np.ndarray) -> tuple[np.ndarray, int]:
    params = quantize.load_params(path)
    # codes, float32 scale, uint8 zero point, float32 intercept
    return quantize.predict(params, X), params.codes.nbytes + 4 + 1 + 4


def onnx_row(path: Path, X: np.ndarray) -> tuple[np.ndarray, int]:
    # A plain default session: what any user of the file gets.
    return verify.run_session(ort.InferenceSession(str(path)), X), onnx_payload_bytes(path)


def measure(out: Path) -> list[dict]:
    split = data.load_split(out / data.SPLIT_NAME)
    X, y = split.X_test, split.y_test
    rows = [
        ("sklearn float (joblib)", out / train.MODEL_NAME, sklearn_row),
        ("quantized params (joblib)", out / quantize.PARAMS_JOBLIB, quant_params_row),
        ("ONNX float", out / config.ONNX_NAMES["float"], onnx_row),
        ("ONNX dequant", out / config.ONNX_NAMES["dequant"], onnx_row),
        ("ONNX uint8", out / config.ONNX_NAMES["uint8"], onnx_row),
    ]
    missing = [str(p) for _, p, _ in rows if not p.exists()]
    if missing:
        raise UserError(f"missing {', '.join(missing)}; run `make all` first")
    float_pred = None
    table = []
    for name, path, runner in rows:
        pred, payload = runner(path, X)
        if float_pred is None:
            float_pred = pred
        m = regression_metrics(y, pred)
        table.append({"variant": name, "file": path.name, "file_bytes": path.stat().st_size,
                      "payload_bytes": payload, "test_r2": m["r2"], "test_rmse": m["rmse"],
                      "max_abs_diff_vs_float": float(np.max(np.abs(pred - float_pred)))})
    return table


def markdown(table: list[dict], bits: int) -> str:
    lines = [f"| variant ({bits}-bit quantization) | file | file bytes | weight payload bytes "
             "| test R² | test RMSE | max \\|pred − float pred\\| |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for r in table:
        lines.append(f"| {r['variant']} | `{r['file']}` | {r['file_bytes']} | {r['payload_bytes']} | "
                     f"{r['test_r2']:.4f} | {r['test_rmse']:.4f} | {r['max_abs_diff_vs_float']:.2e} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pipeline.compare", description=__doc__.splitlines()[0])
    parser.parse_args(argv)
    out = config.artifacts_dir()
    table = measure(out)
    bits = int(artifacts.read_json(out / quantize.PARAMS_JSON)["bits"])
    md = markdown(table, bits)
    artifacts.write_json(out / JSON_NAME, {"bits": bits, "rows": table, "onnxruntime": ort.__version__,
                                           "provenance": artifacts.provenance("compare", {})})
    artifacts.write_text(out / MD_NAME, md)
    print(md, end="")
    return 0


if __name__ == "__main__":
    run_cli(main, "pipeline.compare")
