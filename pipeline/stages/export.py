"""Stage 4: export three ONNX models and verify them before they are written.

    python -m pipeline.stages.export --split artifacts/split.npz --model artifacts/model.joblib \
        --params artifacts/quant_params.joblib --float artifacts/model_float.onnx \
        --dequant artifacts/model_dequant.onnx --uint8 artifacts/model_uint8.onnx \
        --report artifacts/export_report.json
    python -m pipeline.stages.export --verify-only ...  # the same checks on the ONNX files on disk

- model_float.onnx:   the trained LinearRegression, converted by skl2onnx to MatMul + Add, then
  its MatMul written as Mul + ReduceSum: OpenVINO's CPU plugin runs MatMul in bf16 by default
  on CPUs with avx512_bf16 or AMX (measured: predictions off by up to 0.25), and Mul +
  ReduceSum in float32.
- model_dequant.onnx: a LinearRegression holding the dequantized weights, converted the same way.
- model_uint8.onnx:   the uint8 codes as an initializer, dequantized inside the graph by
  DequantizeLinear, then Mul and ReduceSum. Not MatMul: onnxruntime's default optimizer
  fuses DequantizeLinear -> MatMul (and -> Gemm) into MatMulNBits, which also quantizes the
  input to 8 bits and ruins this model (measured: test R² -6.17). Mul + ReduceSum computes the same dot
  product and is left alone at every optimization level.

All three use only the default ONNX domain at opset 19, IR version 9, and name their batch
dimension N (pipeline.graphs.onnx_spec says why): `make compat` runs them on onnxruntime 1.16 to
today's, onnxruntime-node, OpenVINO, tract and onnx's reference evaluator. The graphs are built
in ``pipeline.graphs.build``; this stage checks them and writes them.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import joblib
from sklearn.linear_model import LinearRegression

from housing_runtime.errors import UserError, run_cli
from pipeline import artifacts
from pipeline.graphs import onnx_spec, verify
from pipeline.graphs.build import add_metadata, build_uint8_model, convert_sklearn, dequantized_model
from pipeline.metrics import regression_metrics
from pipeline.quantization import qparams
from pipeline.stages import data


def load_inputs(model_path: Path, params_path: Path) -> tuple[LinearRegression, qparams.QuantParams]:
    try:
        return joblib.load(model_path), qparams.load_params(params_path)
    except FileNotFoundError as err:
        raise UserError(f"{err.filename} is missing; run `make all` first") from None


def verify_files(
    args: argparse.Namespace, split: data.Split, float_model: LinearRegression, dequant_model: LinearRegression
) -> int:
    """Re-run the export's checks on the ONNX files already written."""
    missing = [str(p) for p in (args.float, args.dequant, args.uint8) if not p.is_file()]
    if missing:
        raise UserError(f"missing {', '.join(missing)}; run `make all` first")
    X = verify.verification_inputs(split)
    results = verify.check_models(
        {v: getattr(args, v).read_bytes() for v in ("float", "dequant", "uint8")},
        verify.sklearn_reference(float_model, X),
        verify.sklearn_reference(dequant_model, X),
        X,
    )
    for name, result in results.items():
        print(
            f"verify: {name}: max |diff| {max(result['max_abs_diff'].values()):.2e} "
            f"<= {result['tolerance']:g} at every level"
        )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pipeline.stages.export", description=__doc__.splitlines()[0])
    parser.add_argument("--split", type=Path, required=True, help="input: the split from pipeline.stages.data")
    parser.add_argument("--model", type=Path, required=True, help="input: the model from pipeline.stages.train")
    parser.add_argument(
        "--params", type=Path, required=True, help="input: the parameters from pipeline.stages.quantize"
    )
    for variant in ("float", "dequant", "uint8"):
        parser.add_argument(f"--{variant}", type=Path, required=True, help=f"output: the {variant} ONNX model")
    parser.add_argument("--report", type=Path, help="output: what was verified (JSON)")
    parser.add_argument(
        "--verify-only", action="store_true", help="check the ONNX files on disk against their sources; write nothing"
    )
    args = parser.parse_args(argv)
    if not args.verify_only and args.report is None:
        parser.error("--report is required unless --verify-only")
    split = data.load_split(args.split)
    float_model, params = load_inputs(args.model, args.params)
    dequant_model = dequantized_model(params)
    if args.verify_only:
        return verify_files(args, split, float_model, dequant_model)
    float_metrics = regression_metrics(split.y_test, float_model.predict(split.X_test))
    quant_metrics = regression_metrics(split.y_test, qparams.predict(params, split.X_test))

    models = {
        "float": add_metadata(convert_sklearn(float_model), "float", None, float_metrics, {"model": args.model}),
        "dequant": add_metadata(
            convert_sklearn(dequant_model), "dequant", params.bits, quant_metrics, {"quant_params": args.params}
        ),
        "uint8": add_metadata(
            build_uint8_model(params), "uint8", params.bits, quant_metrics, {"quant_params": args.params}
        ),
    }
    blobs = {v: m.SerializeToString() for v, m in models.items()}
    X = verify.verification_inputs(split)
    results = verify.check_models(
        blobs, verify.sklearn_reference(float_model, X), verify.sklearn_reference(dequant_model, X), X
    )
    # Only verified models reach their final names.
    for variant, blob in blobs.items():
        artifacts.write_bytes(getattr(args, variant), blob)
    artifacts.write_json(
        args.report,
        {
            "opset": onnx_spec.ONNX_OPSET,
            "ir_version": onnx_spec.ONNX_IR_VERSION,
            "rows_checked": int(X.shape[0]),
            "checks": results,
            "provenance": artifacts.provenance(
                "export", {"split": args.split, "model": args.model, "quant_params": args.params}
            ),
        },
    )
    for name, result in results.items():
        print(
            f"export: {name}: max |diff| {max(result['max_abs_diff'].values()):.2e} "
            f"(tolerance {result['tolerance']:g}, every optimization level)"
        )
    return 0


if __name__ == "__main__":
    run_cli(main, "pipeline.stages.export")
