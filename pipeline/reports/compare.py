"""`make compare`: size and accuracy of every variant, each measured by running the artifact.

    python -m pipeline.reports.compare --split artifacts/split.npz --model artifacts/model.joblib \
        --params artifacts/quant_params.joblib --float artifacts/model_float.onnx \
        --dequant artifacts/model_dequant.onnx --uint8 artifacts/model_uint8.onnx \
        --json artifacts/compare.json --markdown artifacts/compare.md

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

from housing_runtime.errors import UserError, run_cli
from pipeline import artifacts
from pipeline.graphs import verify
from pipeline.metrics import regression_metrics
from pipeline.quantization import qparams
from pipeline.stages import data

# Numeric payload dtypes; int64 tensors in these graphs are axes and shapes, not weights.
_PAYLOAD_DTYPES = (np.float32, np.float64, np.uint8)


def onnx_payload_bytes(path: Path) -> int:
    """Bytes of weight data in an ONNX file: initializers and float-list attributes (an
    ai.onnx.ml LinearRegressor keeps its weights as attributes; these models use none)."""
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
    params = qparams.load_params(path)
    # codes, float32 scale, uint8 zero point, float32 intercept
    return qparams.predict(params, X), params.codes.nbytes + 4 + 1 + 4


def onnx_row(path: Path, X: np.ndarray) -> tuple[np.ndarray, int]:
    # A plain default session: what any user of the file gets.
    return verify.run_session(ort.InferenceSession(str(path)), X), onnx_payload_bytes(path)


def measure(args: argparse.Namespace) -> list[dict]:
    split = data.load_split(args.split)
    X, y = split.X_test, split.y_test
    rows = [
        ("sklearn float (joblib)", args.model, sklearn_row),
        ("quantized params (joblib)", args.params, quant_params_row),
        ("ONNX float", args.float, onnx_row),
        ("ONNX dequant", args.dequant, onnx_row),
        ("ONNX uint8", args.uint8, onnx_row),
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
        table.append(
            {
                "variant": name,
                "file": path.name,
                "file_bytes": path.stat().st_size,
                "payload_bytes": payload,
                "test_r2": m["r2"],
                "test_rmse": m["rmse"],
                "max_abs_diff_vs_float": float(np.max(np.abs(pred - float_pred))),
            }
        )
    return table


def markdown(table: list[dict], bits: int) -> str:
    lines = [
        f"| variant ({bits}-bit quantization) | file | file bytes | weight payload bytes "
        "| test R² | test RMSE | max \\|pred − float pred\\| |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in table:
        lines.append(
            f"| {r['variant']} | `{r['file']}` | {r['file_bytes']} | {r['payload_bytes']} | "
            f"{r['test_r2']:.4f} | {r['test_rmse']:.4f} | {r['max_abs_diff_vs_float']:.2e} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pipeline.reports.compare", description=__doc__.splitlines()[0])
    parser.add_argument("--split", type=Path, required=True, help="input: the split from pipeline.stages.data")
    parser.add_argument("--model", type=Path, required=True, help="input: the model from pipeline.stages.train")
    parser.add_argument(
        "--params", type=Path, required=True, help="input: the parameters from pipeline.stages.quantize"
    )
    for variant in ("float", "dequant", "uint8"):
        parser.add_argument(f"--{variant}", type=Path, required=True, help=f"input: the {variant} ONNX model")
    parser.add_argument("--json", type=Path, required=True, help="output: the table as JSON")
    parser.add_argument("--markdown", type=Path, required=True, help="output: the table as Markdown")
    args = parser.parse_args(argv)
    table = measure(args)
    bits = qparams.load_params(args.params).bits
    md = markdown(table, bits)
    artifacts.write_json(
        args.json,
        {
            "bits": bits,
            "rows": table,
            "onnxruntime": ort.__version__,
            "provenance": artifacts.provenance(
                "compare",
                {name: getattr(args, name) for name in ("split", "model", "params", "float", "dequant", "uint8")},
            ),
        },
    )
    artifacts.write_text(args.markdown, md)
    print(f"compare: wrote {args.json} and {args.markdown}")
    return 0


if __name__ == "__main__":
    run_cli(main, "pipeline.reports.compare")
