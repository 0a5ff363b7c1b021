"""The graphs this project chose not to ship, each one change away from a shipped model.

`make compat` runs them beside the shipped models, so every reason the README gives for the
export's choices is measured on the runtimes themselves; they are reported and never fail the
target. The tests use the first to show that the export's verification and `make compat` catch
a model that a runtime computes wrongly.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import onnx
from onnx import helper, numpy_helper
from sklearn.linear_model import LinearRegression

from pipeline import config
from pipeline.graphs import build
from pipeline.quantization.qparams import QuantParams


def matmul_dequant_model(params: QuantParams) -> onnx.ModelProto:
    """The uint8 model with its Mul + ReduceSum written as MatMul: X @ DequantizeLinear(codes [8, 1]).

    onnxruntime's optimizer (EXTENDED and above, and so a default session) fuses this pair into
    MatMulNBits, which quantizes the input to 8 bits too: on this data, test R² -6.17."""
    model = build.build_uint8_model(params)
    graph = model.graph
    codes = next(t for t in graph.initializer if t.name == "coef_codes")
    codes.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(codes).reshape(config.N_FEATURES, 1), codes.name))
    graph.initializer.remove(next(t for t in graph.initializer if t.name == build.DOT_AXIS))
    mul = next(n for n in graph.node if n.op_type == "Mul")
    reduce_sum = next(n for n in graph.node if n.op_type == "ReduceSum")
    at = list(graph.node).index(mul)
    graph.node.remove(mul)
    graph.node.remove(reduce_sum)
    graph.node.insert(at, helper.make_node("MatMul", list(mul.input), list(reduce_sum.output)))
    return model


def at_versions(model: onnx.ModelProto, opset: int, ir_version: int) -> onnx.ModelProto:
    """The same graph stamped with another default-domain opset and IR version."""
    del model.opset_import[:]
    model.opset_import.append(helper.make_opsetid("", opset))
    model.ir_version = ir_version
    return model


def unnamed_batch(model: onnx.ModelProto) -> onnx.ModelProto:
    """The same graph with a batch dimension that has neither a size nor a name."""
    for value in [*model.graph.input, *model.graph.output]:
        value.type.tensor_type.shape.dim[0].ClearField("dim_param")
    return model


@dataclass(frozen=True)
class Rejected:
    name: str
    change: str  # what differs from the shipped model, for the report
    build: Callable[[LinearRegression, QuantParams], onnx.ModelProto]


REJECTED = (
    Rejected(
        "uint8 as MatMul",
        "DequantizeLinear -> MatMul, not Mul + ReduceSum",
        lambda model, params: matmul_dequant_model(params),
    ),
    Rejected(
        "float as MatMul", "skl2onnx's MatMul + Add, not rewritten", lambda model, params: build.skl2onnx_graph(model)
    ),
    Rejected(
        "float as LinearRegressor",
        "skl2onnx's default: ai.onnx.ml LinearRegressor",
        lambda model, params: build.skl2onnx_graph(model, black_op=None),
    ),
    Rejected(
        "uint8 at IR 10",
        "opset 21 and IR 10, as exported before",
        lambda model, params: at_versions(build.build_uint8_model(params), 21, 10),
    ),
    Rejected(
        "uint8 at opset 20",
        "opset 20, the newest IR 9 allows",
        lambda model, params: at_versions(build.build_uint8_model(params), 20, 9),
    ),
    Rejected(
        "uint8 at opset 13",
        "opset 13 and IR 7, which older releases load too",
        lambda model, params: at_versions(build.build_uint8_model(params), 13, 7),
    ),
    Rejected(
        "uint8, unnamed batch",
        "a batch dimension with no size and no name",
        lambda model, params: unnamed_batch(build.build_uint8_model(params)),
    ),
)
