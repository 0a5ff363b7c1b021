"""Checks of the inference server that both the host tests (tests/runtime/test_server.py) and the
container tests (tests/test_container.py) run: the same conformance against `serve` on the host
and against `docker run IMAGE serve`."""

from __future__ import annotations

import gzip
import http.client
import json

import numpy as np
import tritonclient.http as triton

from benchmarks.serve import free_port, serve_command, wait_ready  # noqa: F401 (the tests' too)
from helpers import california_like_rows
from pipeline import config

MODELS = config.MODEL_VARIANTS


def request(port: int, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request(method, path, body=body, headers=headers or {})
    response = conn.getresponse()
    return response.status, response.getheader("Content-Type"), response.read(), response


def infer_body(data, shape=None, name="input", datatype="FP32", **extra) -> bytes:
    tensor = {"name": name, "datatype": datatype, "shape": shape if shape is not None else [1, 8], "data": data}
    return json.dumps({"inputs": [tensor], **extra}).encode()


ROW = [8.3, 41.0, 7.0, 1.0, 322.0, 2.6, 37.9, -122.2]


BINARY_HEADER = b'{"inputs":[{"name":"input","shape":[1,8],"datatype":"FP32","parameters":{"binary_data_size":32}}]}'
BAD_REQUESTS = [
    # (status, method, path, body, headers, words in the error)
    (400, "POST", "/v2/models/uint8/infer", b"{not json", {}, "not valid JSON"),
    (400, "POST", "/v2/models/uint8/infer", b'{"inputs": 3}', {}, "'inputs' must be a list"),
    (400, "POST", "/v2/models/uint8/infer", infer_body(ROW, name="x"), {}, "unknown input"),
    (400, "POST", "/v2/models/uint8/infer", infer_body(ROW, datatype="FP64"), {}, "expected FP32"),
    (400, "POST", "/v2/models/uint8/infer", infer_body(ROW, [8]), {}, "expected [N, 8]"),
    (400, "POST", "/v2/models/uint8/infer", infer_body(ROW, [2, 8]), {}, "needs 16"),
    (400, "POST", "/v2/models/uint8/infer", infer_body([True] + ROW[1:]), {}, "row 0, column 'MedInc': true is not"),
    (400, "POST", "/v2/models/uint8/infer", infer_body([[1.0], 2.0] + ROW[2:]), {}, "rows of 8 numbers"),
    (400, "POST", "/v2/models/uint8/infer", infer_body([[1.0] * 7, [1.0] * 9], [2, 8]), {}, "rows of 8 numbers"),
    (400, "POST", "/v2/models/uint8/infer", infer_body(ROW, id=7), {}, "'id' must be a string"),
    (400, "POST", "/v2/models/uint8/infer", infer_body(ROW, parameters=[1]), {}, "'parameters' must be an object"),
    (
        400,
        "POST",
        "/v2/models/uint8/infer",
        infer_body(ROW, outputs=[{"name": "variable", "parameters": {"binary_data": 1}}]),
        {},
        "'binary_data' is true or false",
    ),
    (
        400,
        "POST",
        "/v2/models/uint8/infer",
        gzip.compress(infer_body(ROW)) + b"JUNK",
        {"Content-Encoding": "gzip"},
        "not one complete gzip stream",
    ),
    (400, "POST", "/v2/models/uint8/infer", b"{}", {"Inference-Header-Content-Length": "\u00b2"}, "byte count"),
    (400, "POST", "/v2/models/uint8/infer", b"{}", {"Inference-Header-Content-Length": "9" * 5000}, "byte count"),
    (400, "POST", "/v2/models/uint8/infer", infer_body([1e39] + ROW[1:]), {}, "outside float32's range"),
    (400, "POST", "/v2/models/uint8/infer", infer_body([10**400] + ROW[1:]), {}, "outside float32's range"),
    (
        400,
        "POST",
        "/v2/models/uint8/infer",
        b'{"inputs":[{"name":"input","shape":[1,8],"datatype":"FP32","data":[Infinity,1,2,3,4,5,6,7]}]}',
        {},
        "not a finite number",
    ),
    (400, "POST", "/v2/models/uint8/infer", b'{"inputs":[],"inputs":[]}', {}, "duplicate key"),
    (
        400,
        "POST",
        "/v2/models/uint8/infer",
        BINARY_HEADER + b"\0" * 8,  # 8 bytes where 32 are declared
        {"Inference-Header-Content-Length": str(len(BINARY_HEADER))},
        "binary_data_size",
    ),
    (400, "POST", "/v2/models/uint8/infer", b"{}", {"Inference-Header-Content-Length": "9999"}, "within the body"),
    (400, "POST", "/v1/models/uint8:predict", b'{"instances": [{"MedInc": 1}]}', {}, "missing HouseAge"),
    (404, "POST", "/v2/models/int4/infer", infer_body(ROW), {}, "unknown model"),
    (404, "GET", "/v2/models/uint8/versions/2", None, {}, "no version '2'"),
    (404, "GET", "/v3/anything", None, {}, "no route"),
    (404, "GET", "/v2/models/uint8%2Fready", None, {}, "unknown model"),
    (405, "GET", "/v2/models/uint8/infer", None, {}, "use POST"),
    (405, "POST", "/v2/health/live", b"", {}, "use GET"),
    (405, "FOO", "/v2", None, {}, "use GET"),
    (413, "POST", "/v2/models/uint8/infer", infer_body([], [5001, 8]), {}, "over the limit of 5000"),
    (413, "POST", "/v2/models/uint8/infer", b"", {"Content-Length": str(65 << 20)}, "over the limit"),
    (415, "POST", "/v2/models/uint8/infer", infer_body(ROW), {"Content-Encoding": "br"}, "not supported"),
]


def check_bad_request(port: int, status, method, path, body, headers, words) -> None:
    """A 4xx with one JSON line naming what was wrong, never a traceback."""
    if headers.get("Content-Length"):  # a declared size over the limit: refused before the body is read
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        conn.putrequest(method, path)
        conn.putheader("Content-Length", headers["Content-Length"])
        conn.endheaders()
        response = conn.getresponse()
        got_status, ctype, raw = response.status, response.getheader("Content-Type"), response.read()
    else:
        got_status, ctype, raw, _ = request(port, method, path, body, headers)
    assert got_status == status, raw
    assert ctype.startswith("application/json")
    error = json.loads(raw)["error"]
    assert words in error and "\n" not in error and "Traceback" not in error


def check_health_and_metadata(client: triton.InferenceServerClient) -> None:
    assert client.is_server_live() and client.is_server_ready()
    server = client.get_server_metadata()
    assert server["name"] and "binary_tensor_data" in server["extensions"]
    for model in MODELS:
        assert client.is_model_ready(model) and client.is_model_ready(model, "1")
        meta = client.get_model_metadata(model)
        assert meta["name"] == model and meta["versions"] == ["1"] and meta["platform"] == "onnxruntime_onnx"
        assert meta["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 8]}]
        assert meta["outputs"] == [{"name": "variable", "datatype": "FP32", "shape": [-1, 1]}]


def check_infer(client: triton.InferenceServerClient, reference, rows: int, binary_in: bool, binary_out: bool) -> None:
    """tritonclient's infer on every model equals ``reference(variant, X)`` exactly."""
    X = california_like_rows(rows, seed=rows).astype(np.float32)
    for model in MODELS:
        tensor = triton.InferInput("input", list(X.shape), "FP32")
        tensor.set_data_from_numpy(X, binary_data=binary_in)
        output = triton.InferRequestedOutput("variable", binary_data=binary_out)
        result = client.infer(model, [tensor], outputs=[output], request_id=f"r{rows}")
        got = result.as_numpy("variable")
        assert got.shape == (rows, 1) and got.dtype == np.float32
        np.testing.assert_array_equal(got.reshape(-1), reference(model, X))
        assert result.get_response()["id"] == f"r{rows}"


INFER_MODES = [
    (rows, binary_in, binary_out) for rows in (1, 1000) for binary_in in (True, False) for binary_out in (True, False)
]
