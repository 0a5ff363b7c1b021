"""make compat: the ONNX models on other onnxruntime releases, onnxruntime-node, OpenVINO, tract and
onnx's reference evaluator (matrix.py drives, runner.py and node/runner.js run one engine each)."""
