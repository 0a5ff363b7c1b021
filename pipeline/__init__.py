"""California Housing linear regression: train, quantize to 8 bits, export to ONNX, serve.

Each stage is one module with a ``main()``; the Makefile is the map of how they chain.
This file stays empty on purpose: ``pipeline.runtime`` must import without pulling in
scikit-learn, so nothing here may import a stage.
"""
