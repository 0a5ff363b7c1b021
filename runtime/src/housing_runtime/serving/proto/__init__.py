"""The Open Inference Protocol's gRPC service (KServe V2, ``inference.GRPCInferenceService``).

``grpc_predict_v2.proto`` is vendored unchanged from KServe (Apache-2.0, its header kept),
python/kserve/kserve/protocol/grpc/grpc_predict_v2.proto at commit aaac4e294dae2c7b; the
``*_pb2*`` modules beside it are generated from it by ``make proto`` (grpcio-tools) and
checked against it by tests/runtime/test_grpc_stubs.py. Do not edit them by hand.
"""
