"""What the exported ONNX graphs are: opset, IR version, input and output names.
Standard library only: the runtime reads the names."""
from __future__ import annotations

# ONNX targets: the lower of what skl2onnx 1.20 emits (opset 22) and what is needed; IR 10
# is what onnx 1.17+ pairs with opset 21, and what every onnxruntime since 1.20 loads.
# onnx.helper.make_model would otherwise stamp the newest IR version of the installed onnx.
ONNX_OPSET = 21
ONNX_ML_OPSET = 1
ONNX_IR_VERSION = 10
INPUT_NAME = "input"
OUTPUT_NAME = "variable"  # skl2onnx's name for a regressor's output; all three models share it
