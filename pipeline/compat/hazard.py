"""The uint8 model's weights in the graph this project does not ship: DequantizeLinear -> MatMul.

onnxruntime's optimizer (EXTENDED and above, and so a default session) fuses that pair into
MatMulNBits, which quantizes the input to 8 bits too: on this data, test R² -6.18 instead of
0.58. The shipped uint8 model computes the same dot product with Mul + ReduceSum instead.
`make compat` runs this graph beside the shipped ones, so which releases fuse it is measured;
the tests use it to show that the export's verification and `make compat` catch it.
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from pipeline import onnx_spec
from pipeline.qparams import QuantParams

NAME = "uint8-as-MatMul"


def matmul_dequant_model(params: QuantParams) -> onnx.ModelProto:
    """y = X @ DequantizeLinear(codes [8, 1], scale, zero_point) + intercept."""
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
                             ir_version=onnx_spec.ONNX_IR_VERSION, producer_name="pipeline.compat.hazard")
