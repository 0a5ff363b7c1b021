"""NVIDIA's tritonclient[grpc] against the server's V2 gRPC: run by tests/runtime/test_grpc.py and
tests/test_container.py in their own venv (requirements-grpc-client.txt: tritonclient pins
protobuf 6, the server protobuf 7), so this file imports nothing of the project.

    python tests/grpc_conformance.py HOST:PORT MODEL ROWS.npy...

Prints one JSON document: liveness, readiness, model readiness, server and model metadata as
tritonclient reads them, and for each ROWS file the predictions of ``infer`` with raw inputs
(tritonclient's InferenceServerClient) and with typed ``fp32_contents`` (Triton's own generated
stub, which tritonclient ships), each as a list of float32 values.
"""

from __future__ import annotations

import json
import sys

import grpc
import numpy as np
import tritonclient.grpc as triton
from tritonclient.grpc import service_pb2, service_pb2_grpc


def raw_infer(client: triton.InferenceServerClient, model: str, X: np.ndarray) -> dict:
    tensor = triton.InferInput("input", list(X.shape), "FP32")
    tensor.set_data_from_numpy(X)
    result = client.infer(model, [tensor], request_id="conformance-raw")
    response = result.get_response()
    return {
        "id": response.id,
        "raw_outputs": len(response.raw_output_contents),
        "predictions": result.as_numpy(response.outputs[0].name).ravel().tolist(),
    }


def typed_infer(address: str, model: str, X: np.ndarray) -> dict:
    stub = service_pb2_grpc.GRPCInferenceServiceStub(grpc.insecure_channel(address))
    tensor = service_pb2.ModelInferRequest().InferInputTensor(
        name="input",
        datatype="FP32",
        shape=list(X.shape),
        contents=service_pb2.InferTensorContents(fp32_contents=X.ravel().tolist()),
    )
    response = stub.ModelInfer(service_pb2.ModelInferRequest(model_name=model, id="conformance-typed", inputs=[tensor]))
    return {
        "id": response.id,
        "raw_outputs": len(response.raw_output_contents),
        "shape": list(response.outputs[0].shape),
        "predictions": np.array(response.outputs[0].contents.fp32_contents, np.float32).tolist(),
    }


def main(address: str, model: str, *row_files: str) -> dict:
    client = triton.InferenceServerClient(address)
    server = client.get_server_metadata()
    meta = client.get_model_metadata(model)
    report: dict = {
        "live": client.is_server_live(),
        "ready": client.is_server_ready(),
        "model_ready": client.is_model_ready(model),
        "model_ready_v1": client.is_model_ready(model, "1"),
        "server": {"name": server.name, "version": server.version, "extensions": list(server.extensions)},
        "model": {
            "name": meta.name,
            "versions": list(meta.versions),
            "platform": meta.platform,
            "inputs": [{"name": t.name, "datatype": t.datatype, "shape": list(t.shape)} for t in meta.inputs],
            "outputs": [{"name": t.name, "datatype": t.datatype, "shape": list(t.shape)} for t in meta.outputs],
        },
        "infer": {},
    }
    for path in row_files:
        X = np.load(path).astype(np.float32)
        report["infer"][path] = {"raw": raw_infer(client, model, X), "typed": typed_infer(address, model, X)}
    return report


if __name__ == "__main__":
    print(json.dumps(main(*sys.argv[1:])))
