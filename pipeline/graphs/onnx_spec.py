"""What the exported ONNX graphs are: opset, IR version, input and output names.
Standard library only: the runtime reads the names."""

from __future__ import annotations

# ONNX targets, chosen for reach (README, "Where the models run"; `make compat` proves it):
# - IR 9 is the newest that onnxruntime 1.16 and 1.17 load (they refuse IR 10, "max supported
#   IR version: 9"); onnx.helper.make_model would otherwise stamp the installed onnx's newest.
# - opset 19 is the newest onnxruntime 1.16 runs (IR 9 allows 20, which 1.16 refuses), and the
#   oldest at which onnx's ReferenceEvaluator runs DequantizeLinear (it cannot run
#   DequantizeLinear-13), so every model also runs in the reference that defines the operators.
ONNX_OPSET = 19
ONNX_IR_VERSION = 9
INPUT_NAME = "input"
OUTPUT_NAME = "variable"  # skl2onnx's name for a regressor's output; all three models share it
# The batch dimension's name in every model's input and output: runtimes such as tract refuse
# an input dimension that has neither a size nor a name.
BATCH_DIM = "N"
