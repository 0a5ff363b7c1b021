"""The graphs this project chose not to ship, each one change away from a shipped model.

`make compat` runs them beside the shipped models, so every reason the README gives for the
export's choices is measured on the runtimes themselves; they are reported and never fail the
target. The tests use the first to show that the export's verification and `make compat` catch
a model that a runtime computes wrongly.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from skl2onnx import to_onnx
from skl2onnx.common.data_types import FloatTensorType
from sklearn.linear_model import LinearRegression

from pipeline import config, export, onnx_spec
from pipeline.qparams import QuantParams


def matmul_dequant_model(params: QuantParams) -> onnx.ModelProto:
    """y = X @ DequantizeLinear(codes [8, 1], scale, zero_point) + intercept.

    onnxruntime's optimizer (EXTENDED and above, and so a default session) fuses this pair into
    MatMulNBits, which quantizes the input to 8 bits too: on this data, test R² -6.17."""
    inits = [numpy_helper.from_array(params.codes.astype(np.uint8).reshape(8, 1), "q"),
             numpy_helper.from_array(np.array(params.scale, np.float32), "s"),
             numpy_helper.from_array(np.array(params.zero_point, np.uint8), "z"),
             numpy_helper.from_array(np.array([params.intercept], np.float32), "b")]
    nodes = [helper.make_node("DequantizeLinear", ["q", "s", "z"], ["w"]),
             helper.make_node("MatMul", [onnx_spec.INPUT_NAME, "w"], ["xw"]),
             helper.make_node("Add", ["xw", "b"], [onnx_spec.OUTPUT_NAME])]
    inputs = [helper.make_tensor_value_info(onnx_spec.INPUT_NAME, TensorProto.FLOAT, [onnx_spec.BATCH_DIM, 8])]
    outputs = [helper.make_tensor_value_info(onnx_spec.OUTPUT_NAME, TensorProto.FLOAT, [onnx_spec.BATCH_DIM, 1])]
    graph = helper.make_graph(nodes, "uint8_as_matmul", inputs, outputs, inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", onnx_spec.ONNX_OPSET)],
                             ir_version=onnx_spec.ONNX_IR_VERSION, producer_name="pipeline.compat.rejected")


def skl2onnx_as_is(model: LinearRegression, black_op: set[str] | None) -> onnx.ModelProto:
    """skl2onnx's own graph at the shipped opset, IR version and batch name, not rewritten."""
    onx = to_onnx(model, initial_types=[(onnx_spec.INPUT_NAME, FloatTensorType([None, config.N_FEATURES]))],
                  target_opset={"": onnx_spec.ONNX_OPSET, "ai.onnx.ml": 1}, black_op=black_op)
    return export._name_batch_dim(export._pin_versions(onx))


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
    Rejected("uint8 as MatMul", "DequantizeLinear -> MatMul, not Mul + ReduceSum",
             lambda model, params: matmul_dequant_model(params)),
    Rejected("float as MatMul", "skl2onnx's MatMul + Add, not rewritten",
             lambda model, params: skl2onnx_as_is(model, {"LinearRegressor"})),
    Rejected("float as LinearRegressor", "skl2onnx's default: ai.onnx.ml LinearRegressor",
             lambda model, params: skl2onnx_as_is(model, None)),
    Rejected("uint8 at IR 10", "opset 21 and IR 10, as exported before",
             lambda model, params: at_versions(export.build_uint8_model(params), 21, 10)),
    Rejected("uint8 at opset 20", "opset 20, the newest IR 9 allows",
             lambda model, params: at_versions(export.build_uint8_model(params), 20, 9)),
    Rejected("uint8 at opset 13", "opset 13 and IR 7, which older releases load too",
             lambda model, params: at_versions(export.build_uint8_model(params), 13, 7)),
    Rejected("uint8, unnamed batch", "a batch dimension with no size and no name",
             lambda model, params: unnamed_batch(export.build_uint8_model(params))),
)
