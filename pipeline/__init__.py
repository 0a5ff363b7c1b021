"""The training side of California Housing: load, train, quantize to 8 bits, export three
verified ONNX models, and report on them. Distribution ``housing-pipeline``; it depends on the
runtime distribution (``housing_runtime``) for the atomic writes, names and errors they share.

- ``stages``: one module per Make stage (data, train, quantize, export, manifest), each with a
  small ``main()``;
- ``quantization``: the optimal quantizer's search, its lattice, the parameters and their
  evaluation;
- ``graphs``: the ONNX graph settings, verification and tolerances;
- ``reports``: compare, sweep and optimality;
- ``compat``: the models on other runtimes and releases.

The Makefile is the map of how the stages chain. This file imports nothing.
"""
