"""Checks of the V2 gRPC front end that both the host tests (tests/runtime/test_grpc.py) and the
container tests (tests/test_container.py) run: tritonclient[grpc]'s conformance (in its own
venv, tests/grpc_conformance.py), the standard health service, and every refusal's status code
and words, through the stubs generated from the vendored proto."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import grpc
import numpy as np
from grpc_health.v1 import health_pb2, health_pb2_grpc

from helpers import REPO, california_like_rows
from housing_runtime.serving.proto import grpc_predict_v2_pb2 as pb
from housing_runtime.serving.proto import grpc_predict_v2_pb2_grpc as pb_grpc

SERVICE = "inference.GRPCInferenceService"
CONFORMANCE = REPO / "tests" / "grpc_conformance.py"


def client_python() -> str:
    """tritonclient[grpc]'s venv (make test and make docker set HOUSING_GRPC_CLIENT)."""
    python = os.environ.get("HOUSING_GRPC_CLIENT", str(REPO / ".venv-grpc-client" / "bin" / "python"))
    assert Path(python).exists(), f"{python} is missing: run the tests through make test (it makes that venv)"
    return python


def stub(port: int) -> pb_grpc.GRPCInferenceServiceStub:
    return pb_grpc.GRPCInferenceServiceStub(grpc.insecure_channel(f"127.0.0.1:{port}"))


def check_tritonclient_conformance(port: int, model: str, reference: Callable, folder: Path) -> None:
    """tritonclient[grpc]: health, metadata, and infer with 1 and 1,000 rows, raw and typed, each
    array-equal to ``reference(model, X)`` (a default onnxruntime session's predictions)."""
    rows = {n: california_like_rows(n, seed=n).astype(np.float32) for n in (1, 1000)}
    files = []
    for n, X in rows.items():
        files.append(folder / f"rows-{n}.npy")
        np.save(files[-1], X)
    out = subprocess.run(
        [client_python(), str(CONFORMANCE), f"127.0.0.1:{port}", model, *map(str, files)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["live"] and report["ready"] and report["model_ready"] and report["model_ready_v1"]
    assert report["server"]["name"] == "housing-runtime"
    assert report["model"]["name"] == model and report["model"]["versions"] == ["1"]
    assert report["model"]["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 8]}]
    assert report["model"]["outputs"][0]["datatype"] == "FP32"
    for (n, X), path in zip(rows.items(), files, strict=True):
        expected = reference(model, X)
        raw, typed = report["infer"][str(path)]["raw"], report["infer"][str(path)]["typed"]
        assert raw["id"] == "conformance-raw" and raw["raw_outputs"] == 1  # raw in, raw out
        assert typed["id"] == "conformance-typed" and typed["raw_outputs"] == 0 and typed["shape"] == [n, 1]
        np.testing.assert_array_equal(np.array(raw["predictions"], np.float32), expected)
        np.testing.assert_array_equal(np.array(typed["predictions"], np.float32), expected)


def check_health(port: int) -> None:
    """grpc.health.v1 through grpcio-health-checking: the server and the service are SERVING; a
    service nobody serves is NOT_FOUND."""
    health = health_pb2_grpc.HealthStub(grpc.insecure_channel(f"127.0.0.1:{port}"))
    for service in ("", SERVICE):
        status = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=10).status
        assert status == health_pb2.HealthCheckResponse.SERVING, service
    try:
        health.Check(health_pb2.HealthCheckRequest(service="nobody.Serves"), timeout=10)
    except grpc.RpcError as err:
        assert err.code() == grpc.StatusCode.NOT_FOUND
    else:
        raise AssertionError("an unknown service was answered")


def tensor(shape=(1, 8), values=None, name="input", datatype="FP32", **contents):
    if values is not None:
        contents["fp32_contents"] = values
    return pb.ModelInferRequest.InferInputTensor(
        name=name, datatype=datatype, shape=list(shape), contents=pb.InferTensorContents(**contents)
    )


ROW = [8.3, 41.0, 7.0, 1.0, 322.0, 2.6, 37.9, -122.2]


def infer(*tensors, **fields) -> pb.ModelInferRequest:
    return pb.ModelInferRequest(model_name=fields.pop("model_name", "uint8"), inputs=list(tensors), **fields)


NO_SUCH_OUTPUT = pb.ModelInferRequest.InferRequestedOutputTensor(name="y")
INVALID, NOT_FOUND = grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND
EXHAUSTED = grpc.StatusCode.RESOURCE_EXHAUSTED
# (code, request, words in the details): every refusal a client can cause. The server these run
# against has --max-rows 5000 and --max-body-bytes 2000000.
BAD_INFERS = [
    (
        INVALID,
        infer(tensor(values=[float("nan")] + ROW[1:])),
        "not a finite",
    ),
    (
        INVALID,
        infer(tensor(values=[float("inf")] + ROW[1:])),
        "not a finite",
    ),
    (INVALID, pb.ModelInferRequest(model_name="uint8", inputs=[tensor(values=ROW[:7])]), "has 7 values"),
    (INVALID, pb.ModelInferRequest(model_name="uint8", inputs=[tensor((1, 7), ROW[:7])]), "has shape [1, 7]"),
    (INVALID, pb.ModelInferRequest(model_name="uint8", inputs=[tensor((0, 8), [])]), "N >= 1"),
    (INVALID, pb.ModelInferRequest(model_name="uint8", inputs=[tensor(name="x", values=ROW)]), "unknown input"),
    (INVALID, pb.ModelInferRequest(model_name="uint8", inputs=[tensor(datatype="FP64", values=ROW)]), "datatype"),
    (INVALID, pb.ModelInferRequest(model_name="uint8", inputs=[tensor(int_contents=[1] * 8)]), "int_contents"),
    (INVALID, pb.ModelInferRequest(model_name="uint8", inputs=[]), "list of one tensor"),
    (
        INVALID,
        pb.ModelInferRequest(model_name="uint8", inputs=[tensor()], raw_input_contents=[b"\0" * 31]),
        "31 raw bytes",
    ),
    (
        INVALID,
        pb.ModelInferRequest(model_name="uint8", inputs=[tensor(values=ROW)], raw_input_contents=[b"\0" * 32]),
        "give one of them",
    ),
    (
        INVALID,
        pb.ModelInferRequest(
            model_name="uint8",
            inputs=[tensor(values=ROW)],
            outputs=[pb.ModelInferRequest.InferRequestedOutputTensor(name="y")],
        ),
        "unknown output",
    ),
    (NOT_FOUND, pb.ModelInferRequest(model_name="int4", inputs=[tensor(values=ROW)]), "unknown model"),
    (NOT_FOUND, pb.ModelInferRequest(model_name="uint8", model_version="2", inputs=[tensor(values=ROW)]), "no version"),
    (
        EXHAUSTED,
        pb.ModelInferRequest(model_name="uint8", inputs=[tensor((5001, 8))], raw_input_contents=[b"\0" * 5001 * 32]),
        "over the limit of 5000",
    ),
    (
        EXHAUSTED,
        pb.ModelInferRequest(model_name="uint8", inputs=[tensor((70000, 8))], raw_input_contents=[b"\0" * 70000 * 32]),
        "larger than max",  # over --max-body-bytes: refused by gRPC itself, before the server's code
    ),
]


def check_bad_infer(port: int, code, request, words: str) -> None:
    try:
        stub(port).ModelInfer(request, timeout=30)
    except grpc.RpcError as err:
        assert err.code() == code, err.details()
        assert words in err.details(), err.details()
    else:
        raise AssertionError(f"refusal expected ({words})")


def check_unknown_models(port: int) -> None:
    """Metadata and readiness of a model or version nobody serves: NOT_FOUND, with the words."""
    calls = [
        (stub(port).ModelMetadata, pb.ModelMetadataRequest(name="int4"), "unknown model 'int4'"),
        (stub(port).ModelReady, pb.ModelReadyRequest(name="uint8", version="7"), "no version '7'"),
    ]
    for call, request, words in calls:
        try:
            call(request, timeout=10)
        except grpc.RpcError as err:
            assert err.code() == NOT_FOUND and words in err.details(), err.details()
        else:
            raise AssertionError(f"{words}: answered")
