"""Stage 4: export three ONNX models and verify them before they are written.

    python -m pipeline.export      # writes model_float.onnx, model_dequant.onnx, model_uint8.onnx
                                   # and export_report.json

- model_float.onnx:   the trained LinearRegression, converted by skl2onnx.
- model_dequant.onnx: a LinearRegression holding the dequantized weights, converted by skl2onnx.
- model_uint8.onnx:   the uint8 codes as an initializer, dequantized inside the graph by
  DequantizeLinear, then Mul and ReduceSum. Not MatMul: onnxruntime's default optimizer
  fuses DequantizeLinear -> MatMul (and -> Gemm) into MatMulNBits, which also quantizes the
  input to 8 bits and ruins this model (measured: test R² -6.18). Mul + ReduceSum computes the same dot
  product and is left alone at every optimization level.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import joblib
import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from skl2onnx import to_onnx
from skl2onnx.common.data_types import FloatTensorType
from sklearn.linear_model import LinearRegression

from pipeline import artifacts, config, data, quantize, train, verify
from pipeline.errors import run_cli

REPORT_NAME = "export_report.json"


def convert_sklearn(model: LinearRegression) -> onnx.ModelProto:
    """skl2onnx conversion with a named float32 input of shape [None, 8] and pinned versions."""
    onx = to_onnx(model, initial_types=[(config.INPUT_NAME, FloatTensorType([None, config.N_FEATURES]))],
                  target_opset={"": config.ONNX_OPSET, "ai.onnx.ml": config.ONNX_ML_OPSET})
    return _pin_versions(onx)


def _pin_versions(model: onnx.ModelProto) -> onnx.ModelProto:
    """One opset import per domain and the pinned IR version (skl2onnx may repeat a domain)."""
    opsets = {}
    for imp in model.opset_import:
        opsets[imp.domain] = max(opsets.get(imp.domain, 0), imp.version)
    del model.opset_import[:]
    model.opset_import.extend(helper.make_opsetid(d, v) for d, v in sorted(opsets.items()))
    model.ir_version = config.ONNX_IR_VERSION
    return model


def build_uint8_model(params: quantize.QuantParams) -> onnx.ModelProto:
    """y = ReduceSum(X * DequantizeLinear(codes, scale, zero_point), axis 1) + intercept."""
    initializers = [
        numpy_helper.from_array(params.codes.astype(np.uint8), "coef_codes"),            # (8,)
        numpy_helper.from_array(np.array(params.scale, dtype=np.float32), "coef_scale"),  # scalar
        numpy_helper.from_array(np.array(params.zero_point, dtype=np.uint8), "coef_zero_point"),
        numpy_helper.from_array(np.array([params.intercept], dtype=np.float32), "intercept"),
        numpy_helper.from_array(np.array([1], dtype=np.int64), "feature_axis"),
    ]
    nodes = [
        helper.make_node("DequantizeLinear", ["coef_codes", "coef_scale", "coef_zero_point"], ["coef"]),
        helper.make_node("Mul", [config.INPUT_NAME, "coef"], ["terms"]),
        helper.make_node("ReduceSum", ["terms", "feature_axis"], ["dot"], keepdims=1),
        helper.make_node("Add", ["dot", "intercept"], [config.OUTPUT_NAME]),
    ]
    graph = helper.make_graph(
        nodes, "housing_linear_uint8",
        [helper.make_tensor_value_info(config.INPUT_NAME, TensorProto.FLOAT, [None, config.N_FEATURES])],
        [helper.make_tensor_value_info(config.OUTPUT_NAME, TensorProto.FLOAT, [None, 1])],
        initializers)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", config.ONNX_OPSET)],
                             ir_version=config.ONNX_IR_VERSION, producer_name="pipeline.export")


def add_metadata(model: onnx.ModelProto, variant: str, bits: int | None, metrics: dict,
                 inputs: dict[str, Path]) -> onnx.ModelProto:
    """Feature names, bit width, metrics and input hashes, readable by any ONNX runtime."""
    props = {
        "variant": variant,
        "feature_names": json.dumps(list(config.FEATURE_NAMES)),
        "bits": "32" if bits is None else str(bits),
        "metrics": json.dumps(metrics, sort_keys=True),
        "input_sha256": json.dumps({n: artifacts.sha256_file(p) for n, p in sorted(inputs.items())}),
        "git_commit": artifacts.git_commit(),
    }
    onnx.helper.set_model_props(model, props)
    model.doc_string = f"California Housing LinearRegression ({variant}); input: float32 [N, 8] in feature_names order"
    return model


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pipeline.export", description=__doc__.splitlines()[0])
    parser.parse_args(argv)
    out = config.artifacts_dir()
    split_path = out / data.SPLIT_NAME
    model_path, params_path = out / train.MODEL_NAME, out / quantize.PARAMS_JOBLIB
    dequant_path = out / quantize.DEQUANT_MODEL_NAME
    float_model: LinearRegression = joblib.load(model_path)
    dequant_model: LinearRegression = joblib.load(dequant_path)
    params = quantize.load_params(params_path)
    float_metrics = artifacts.read_json(out / train.METRICS_NAME)["test"]
    quant_metrics = artifacts.read_json(out / quantize.PARAMS_JSON)["metrics"]["test"]

    models = {
        "float": add_metadata(convert_sklearn(float_model), "float", None, float_metrics, {"model": model_path}),
        "dequant": add_metadata(convert_sklearn(dequant_model), "dequant", params.bits, quant_metrics,
                                {"model": dequant_path, "quant_params": params_path}),
        "uint8": add_metadata(build_uint8_model(params), "uint8", params.bits, quant_metrics,
                              {"quant_params": params_path}),
    }
    blobs = {v: m.SerializeToString() for v, m in models.items()}
    X = verify.verification_inputs(data.load_split(split_path))
    results = verify.check_models(blobs, verify.sklearn_reference(float_model, X),
                                  verify.sklearn_reference(dequant_model, X), X)
    # Only verified models reach their final names.
    for variant, blob in blobs.items():
        artifacts.write_bytes(out / config.ONNX_NAMES[variant], blob)
    artifacts.write_json(out / REPORT_NAME, {
        "opset": config.ONNX_OPSET, "ir_version": config.ONNX_IR_VERSION,
        "rows_checked": int(X.shape[0]), "checks": results,
        "provenance": artifacts.provenance("export", {"split": split_path, "model": model_path,
                                                      "dequant_model": dequant_path,
                                                      "quant_params": params_path}),
    })
    for name, result in results.items():
        print(f"export: {name}: max |diff| {max(result['max_abs_diff'].values()):.2e} "
              f"(tolerance {result['tolerance']:g}, every optimization level)")
    return 0


if __name__ == "__main__":
    run_cli(main, "pipeline.export")
