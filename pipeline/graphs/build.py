"""The three ONNX graphs, built: skl2onnx's conversion of the float and dequantized models with
its MatMul rewritten as a plain dot product (Mul + ReduceSum), and the uint8 graph whose
weights go through DequantizeLinear; each pinned to the project's opset and IR version, with a
named batch dimension and the metadata the runtime reads. No file I/O: the export stage
(``pipeline.stages.export``) writes and verifies them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from skl2onnx import to_onnx
from skl2onnx.common.data_types import FloatTensorType
from sklearn.linear_model import LinearRegression

from housing_runtime.files import sha256_file
from pipeline import artifacts, config
from pipeline.graphs import onnx_spec
from pipeline.graphs.verify import VerificationError
from pipeline.quantization import qparams


def convert_sklearn(model: LinearRegression) -> onnx.ModelProto:
    """skl2onnx's standard-op graph with its MatMul written as Mul + ReduceSum."""
    return matmul_as_dot_product(skl2onnx_graph(model))


def skl2onnx_graph(
    model: LinearRegression, black_op: frozenset[str] | None = frozenset({"LinearRegressor"})
) -> onnx.ModelProto:
    """skl2onnx's conversion with a named float32 input [N, 8] and pinned versions.

    black_op keeps skl2onnx from emitting ai.onnx.ml's LinearRegressor, which OpenVINO cannot
    load; it then writes MatMul + Add. pipeline.compat.rejected passes None for the default."""
    onx = to_onnx(
        model,
        initial_types=[(onnx_spec.INPUT_NAME, FloatTensorType([None, config.N_FEATURES]))],
        target_opset={"": onnx_spec.ONNX_OPSET, "ai.onnx.ml": 1},
        black_op=black_op,
    )
    return _name_batch_dim(_pin_versions(onx))


DOT_AXIS = "feature_axis"  # the initializer holding ReduceSum's axis, [1]


def dot_product(X: str, weights: str, output: str) -> tuple[list[onnx.NodeProto], onnx.TensorProto]:
    """output = ReduceSum(X * weights, axis 1, keepdims): the dot product in a form no runtime
    tested rewrites (not MatMul; see the module docstring). Returns the nodes and the axis."""
    terms = output + "_terms"
    nodes = [
        helper.make_node("Mul", [X, weights], [terms]),
        helper.make_node("ReduceSum", [terms, DOT_AXIS], [output], keepdims=1),
    ]
    return nodes, numpy_helper.from_array(np.array([1], dtype=np.int64), DOT_AXIS)


def the_matmul(graph: onnx.GraphProto) -> tuple[onnx.NodeProto, onnx.TensorProto]:
    """skl2onnx's one MatMul of the input by an 8x1 weight initializer used nowhere else.

    A graph of another shape means skl2onnx changed: fail the export rather than guess."""
    matmuls = [n for n in graph.node if n.op_type == "MatMul"]
    weights = {t.name: t for t in graph.initializer}
    names = set(weights) | {name for n in graph.node for name in (*n.input, *n.output)}
    if len(matmuls) == 1:
        matmul = matmuls[0]
        coef = weights.get(matmul.input[1])
        if (
            coef is not None
            and matmul.input[0] == onnx_spec.INPUT_NAME
            and list(coef.dims) == [config.N_FEATURES, 1]
            and sum(coef.name in n.input for n in graph.node) == 1
            and not {DOT_AXIS, matmul.output[0] + "_terms"} & names
        ):
            return matmul, coef
    raise VerificationError(
        f"skl2onnx's graph is not one MatMul of the input by an {config.N_FEATURES}x1 "
        f"weight initializer used nowhere else (ops: {[n.op_type for n in graph.node]}); "
        "pipeline.stages.export must be updated"
    )


def matmul_as_dot_product(model: onnx.ModelProto) -> onnx.ModelProto:
    """Rewrite skl2onnx's MatMul(input, coef [8, 1]) as ReduceSum(input * coef [8], axis 1).

    The same dot product in float32, in the form the uint8 model uses, which every runtime
    tested runs in float32 by default (OpenVINO runs MatMul in bf16 where the CPU has it)."""
    graph = model.graph
    matmul, coef = the_matmul(graph)
    coef.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(coef).reshape(-1), coef.name))
    nodes, axis = dot_product(onnx_spec.INPUT_NAME, coef.name, matmul.output[0])
    graph.initializer.append(axis)
    at = list(graph.node).index(matmul)
    graph.node.remove(matmul)
    for offset, node in enumerate(nodes):
        graph.node.insert(at + offset, node)
    return model


def _pin_versions(model: onnx.ModelProto) -> onnx.ModelProto:
    """One opset import per domain the nodes use, and the pinned IR version.

    skl2onnx may import a domain twice, or import ai.onnx.ml though no node uses it; a runtime
    without that domain would refuse the file for nothing."""
    used = {node.domain for node in model.graph.node}
    opsets: dict[str, int] = {}
    for imp in model.opset_import:
        if imp.domain in used:
            opsets[imp.domain] = max(opsets.get(imp.domain, 0), imp.version)
    del model.opset_import[:]
    model.opset_import.extend(helper.make_opsetid(d, v) for d, v in sorted(opsets.items()))
    model.ir_version = onnx_spec.ONNX_IR_VERSION
    return model


def _name_batch_dim(model: onnx.ModelProto) -> onnx.ModelProto:
    """Give the first dimension of every graph input and output the name N (skl2onnx leaves it
    without size or name)."""
    for value in [*model.graph.input, *model.graph.output]:
        dim = value.type.tensor_type.shape.dim[0]
        if not dim.HasField("dim_value"):
            dim.dim_param = onnx_spec.BATCH_DIM
    return model


def dequantized_model(params: qparams.QuantParams) -> LinearRegression:
    """A LinearRegression whose weights are exactly the dequantized float32 values."""
    model = LinearRegression()
    model.coef_ = params.weights().astype(np.float64)
    model.intercept_ = np.float64(params.intercept)  # a numpy scalar, as fit() leaves it
    model.n_features_in_ = config.N_FEATURES
    return model


def build_uint8_model(params: qparams.QuantParams) -> onnx.ModelProto:
    """y = ReduceSum(X * DequantizeLinear(codes, scale, zero_point), axis 1) + intercept."""
    initializers = [
        numpy_helper.from_array(params.codes.astype(np.uint8), "coef_codes"),  # (8,)
        numpy_helper.from_array(np.array(params.scale, dtype=np.float32), "coef_scale"),  # scalar
        numpy_helper.from_array(np.array(params.zero_point, dtype=np.uint8), "coef_zero_point"),
        numpy_helper.from_array(np.array([params.intercept], dtype=np.float32), "intercept"),
    ]
    dot, axis = dot_product(onnx_spec.INPUT_NAME, "coef", "dot")
    initializers.append(axis)
    nodes = [
        helper.make_node("DequantizeLinear", ["coef_codes", "coef_scale", "coef_zero_point"], ["coef"]),
        *dot,
        helper.make_node("Add", ["dot", "intercept"], [onnx_spec.OUTPUT_NAME]),
    ]
    graph = helper.make_graph(
        nodes,
        "housing_linear_uint8",
        [
            helper.make_tensor_value_info(
                onnx_spec.INPUT_NAME, TensorProto.FLOAT, [onnx_spec.BATCH_DIM, config.N_FEATURES]
            )
        ],
        [helper.make_tensor_value_info(onnx_spec.OUTPUT_NAME, TensorProto.FLOAT, [onnx_spec.BATCH_DIM, 1])],
        initializers,
    )
    return helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", onnx_spec.ONNX_OPSET)],
        ir_version=onnx_spec.ONNX_IR_VERSION,
        producer_name="pipeline.stages.export",
    )


def add_metadata(
    model: onnx.ModelProto, variant: str, bits: int | None, metrics: dict, inputs: dict[str, Path]
) -> onnx.ModelProto:
    """Feature names, bit width, metrics and input hashes, readable by any ONNX runtime."""
    props = {
        "variant": variant,
        "feature_names": json.dumps(list(config.FEATURE_NAMES)),
        "bits": "32" if bits is None else str(bits),
        "metrics": json.dumps(metrics, sort_keys=True),
        "input_sha256": json.dumps({n: sha256_file(p) for n, p in sorted(inputs.items())}),
        "git_commit": artifacts.git_commit(),
    }
    onnx.helper.set_model_props(model, props)
    model.doc_string = f"California Housing LinearRegression ({variant}); input: float32 [N, 8] in feature_names order"
    return model
