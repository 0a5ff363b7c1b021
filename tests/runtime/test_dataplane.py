"""One data plane under two front ends: the same request, sent as V2 JSON over HTTP or as
protobuf over gRPC, gets the same predictions or the same refusal, in the same words, with the
status each transport maps the refusal's class to (errors.py). In process, no sockets."""

from __future__ import annotations

import json

import numpy as np
import pytest

from helpers import write_synthetic_artifacts
from housing_runtime.serving import errors
from housing_runtime.serving.dataplane import DataPlane
from housing_runtime.serving.grpc_codec import infer_request
from housing_runtime.serving.lifecycle import load_models
from housing_runtime.serving.messages import Limits
from housing_runtime.serving.proto import grpc_predict_v2_pb2 as pb
from housing_runtime.serving.rest import ROUTES, RestAdapter

ROW = [8.3, 41.0, 7.0, 1.0, 322.0, 2.6, 37.9, -122.2]


@pytest.fixture(scope="module")
def plane(tmp_path_factory):
    art = write_synthetic_artifacts(tmp_path_factory.mktemp("plane") / "artifacts")
    return DataPlane(load_models(art, verify=True), Limits(max_rows=100))


def over_http(plane, model, name, datatype, shape, values) -> tuple[int, dict]:
    tensor = {"name": name, "datatype": datatype, "shape": shape, "data": values}
    reply = RestAdapter(plane).handle(
        "POST", f"/v2/models/{model}/infer", {}, json.dumps({"inputs": [tensor]}).encode()
    )
    return reply.status, json.loads(reply.body)


def over_grpc(plane, model, name, datatype, shape, values):
    tensor = pb.ModelInferRequest.InferInputTensor(name=name, datatype=datatype, shape=shape)
    tensor.contents.fp32_contents.extend(values)
    return plane.infer(infer_request(pb.ModelInferRequest(model_name=model, inputs=[tensor])))


CASES = [
    # (model, input name, datatype, shape, values, the refusal's class)
    ("uint8", "input", "FP32", [1, 8], [float("nan")] + ROW[1:], errors.InvalidRequest),
    ("uint8", "input", "FP32", [1, 8], ROW[:7], errors.InvalidRequest),
    ("uint8", "input", "FP32", [1, 9], ROW + [1.0], errors.InvalidRequest),
    ("uint8", "x", "FP32", [1, 8], ROW, errors.InvalidRequest),
    ("uint8", "input", "INT32", [1, 8], ROW, errors.InvalidRequest),
    ("uint8", "input", "FP32", [101, 8], ROW * 101, errors.TooLarge),
    ("int4", "input", "FP32", [1, 8], ROW, errors.NotFound),
]


@pytest.mark.parametrize("model,name,datatype,shape,values,refusal", CASES)
def test_a_refusal_has_the_same_words_and_class_over_both_front_ends(
    plane, model, name, datatype, shape, values, refusal
):
    status, body = over_http(plane, model, name, datatype, shape, values)
    with pytest.raises(refusal) as refused:
        over_grpc(plane, model, name, datatype, shape, values)
    assert status == refusal.http_status
    assert body == {"error": str(refused.value)}


def test_the_same_rows_get_the_same_predictions_over_both_front_ends(plane):
    rows = np.random.default_rng(0).uniform(0, 10, (5, 8)).astype(np.float32)
    values = rows.ravel().tolist()
    status, body = over_http(plane, "float", "input", "FP32", [5, 8], values)
    response = over_grpc(plane, "float", "input", "FP32", [5, 8], values)
    assert status == 200
    np.testing.assert_array_equal(np.array(body["outputs"][0]["data"], np.float32), response.predictions)


def test_every_error_class_maps_to_an_http_status_and_a_grpc_code():
    import grpc

    classes = [errors.ServingError, *errors.ServingError.__subclasses__()]
    assert len(classes) >= 8
    for cls in classes:
        assert 400 <= cls.http_status < 600
        assert isinstance(getattr(grpc.StatusCode, cls.grpc_code), grpc.StatusCode)
        assert cls.grpc_code not in ("UNKNOWN", "INTERNAL")  # never for what a client sent


@pytest.mark.parametrize(
    "method,path,status",
    [
        ("GET", "/v2/models/uint8/versions/1/ready", 200),
        ("HEAD", "/v2/models/uint8", 200),
        ("DELETE", "/v2/models/uint8", 405),
        ("GET", "/v2/models/uint8/infer", 405),
        ("GET", "/v2/models/uint8/explain", 404),
        ("POST", "/v1/models/uint8:explain", 404),
    ],
)
def test_routes_are_a_table_and_the_method_is_checked_per_path(plane, method, path, status):
    assert RestAdapter(plane).handle(method, path, {}, b"").status == status
    assert {route.method for route in ROUTES} == {"GET", "POST"}
