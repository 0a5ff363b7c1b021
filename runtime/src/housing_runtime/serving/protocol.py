"""The Open Inference Protocol (KServe V2) and KServe V1, without a web framework.

Requests arrive here as (method, path, headers, body bytes) and leave as a ``Reply``; the
server module only moves bytes. So every rule of the protocol is unit-testable, and the
values go through the same validation core as the batch CLI (``validate``): the same bad value
gets the same words in both.

- V2 REST (kserve docs/predict-api/v2/required_api.md): health, server and model metadata,
  model readiness, and infer, with data flat or nested and the request id echoed.
- Triton's binary tensor data extension: a JSON header of ``Inference-Header-Content-Length``
  bytes, then each binary input's raw little-endian bytes in order (``binary_data_size``).
  Outputs come back binary when an output asks (``binary_data``) or the request does
  (``binary_data_output``, which tritonclient sends when it names no outputs).
- V1: ``POST /v1/models/{m}:predict`` with {"instances": [records]}, the CLI's JSON records.

Every client fault is a ``ProtocolError``: a 4xx status and one line.
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np

from housing_runtime import DISTRIBUTION, __version__, config, validate
from housing_runtime.errors import UserError, shown, shown_json
from housing_runtime.io.json_values import object_without_duplicates
from housing_runtime.io.native import join_float32
from housing_runtime.model import Predictor
from housing_runtime.serving.options import MAX_ROWS

SERVER_NAME = DISTRIBUTION
SERVER_VERSION = __version__  # the installed distribution's (its metadata)
MODEL_VERSION = "1"
PLATFORM = "onnxruntime_onnx"
EXTENSIONS = ["binary_tensor_data"]
JSON_TYPE = "application/json"
BINARY_TYPE = "application/octet-stream"
HEADER_LENGTH = "inference-header-content-length"


class ProtocolError(Exception):
    """A request the server refuses: an HTTP status (4xx) and one line for the client."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


@dataclass
class Reply:
    status: int
    body: bytes
    content_type: str = JSON_TYPE
    headers: dict = field(default_factory=dict)
    model: str = ""  # for metrics and the access log
    rows: int = 0


def json_reply(status: int, document: object, model: str = "") -> Reply:
    return Reply(status, json.dumps(document, separators=(",", ":")).encode(), model=model)


def error_reply(err: ProtocolError, model: str = "") -> Reply:
    return json_reply(err.status, {"error": str(err)}, model)


@dataclass
class Model:
    """One served model: its name in the URL, its session, and its tensors' names."""

    name: str
    predictor: Predictor
    output_name: str = field(init=False)

    def __post_init__(self):
        self.output_name = self.predictor.session.get_outputs()[0].name

    @property
    def input_name(self) -> str:
        return self.predictor.input_name

    def metadata(self) -> dict:
        return {
            "name": self.name,
            "versions": [MODEL_VERSION],
            "platform": PLATFORM,
            "inputs": [{"name": self.input_name, "datatype": "FP32", "shape": [-1, config.N_FEATURES]}],
            "outputs": [{"name": self.output_name, "datatype": "FP32", "shape": [-1, 1]}],
            "parameters": {"feature_names": list(self.predictor.feature_names)},
        }


@dataclass
class Limits:
    max_rows: int = MAX_ROWS


# /v2/models/{name}[/versions/{version}][/ready|/infer]
MODEL_PATH = re.compile(r"^/v2/models/(?P<name>[^/]+)(?:/versions/(?P<version>[^/]+))?(?P<action>/ready|/infer)?$")
V1_PATH = re.compile(r"^/v1/models/(?P<name>[^/:]+):predict$")


class Protocol:
    """Routes a request to its handler; holds the models and whether the server is ready: once
    they are loaded (``load``), until shutdown begins (``stopping``)."""

    def __init__(self, models: Mapping[str, Model] | None = None, limits: Limits | None = None):
        self.models = dict(models or {})
        self.limits = limits or Limits()
        self.loaded = bool(self.models)
        self.stopping = False

    def load(self, models: Mapping[str, Model]) -> None:
        self.models = dict(models)
        self.loaded = True

    @property
    def ready(self) -> bool:
        return self.loaded and not self.stopping

    def handle(self, method: str, path: str, headers: Mapping[str, str], body: bytes) -> Reply:
        """The reply to one request; never raises for anything the client sent."""
        model = ""
        try:
            if path in ("/v2/health/live", "/v2/health/ready", "/v2"):
                expect(method, "GET")
                if path == "/v2/health/live":
                    return json_reply(200, {"live": True})
                if path == "/v2/health/ready":
                    return json_reply(200 if self.ready else 503, {"ready": self.ready})
                return json_reply(200, {"name": SERVER_NAME, "version": SERVER_VERSION, "extensions": EXTENSIONS})
            if match := MODEL_PATH.match(path):
                model = self.label(match["name"])
                served = self.model(match["name"], match["version"])
                if match["action"] == "/infer":
                    expect(method, "POST")
                    return self.infer(served, headers, body)
                expect(method, "GET")
                if match["action"] == "/ready":
                    return json_reply(
                        200 if self.ready else 503, {"name": served.name, "ready": self.ready}, served.name
                    )
                return json_reply(200, served.metadata(), served.name)
            if match := V1_PATH.match(path):
                model = self.label(match["name"])
                served = self.model(match["name"], None)
                expect(method, "POST")
                return self.predict_v1(served, headers, body)
            raise ProtocolError(404, f"no route {shown(path)}; see /v2 and /v2/models/{{name}}")
        except ProtocolError as err:
            return error_reply(err, model)

    def label(self, name: str) -> str:
        """The model's name for metrics and logs: a name nobody serves is "unknown", so that
        clients cannot create a metric series per made-up name."""
        return name if name in self.models else "unknown"

    def model(self, name: str, version: str | None) -> Model:
        if not self.loaded:
            raise ProtocolError(503, "the models are still loading; retry once /v2/health/ready answers 200")
        if name not in self.models:
            raise ProtocolError(404, f"unknown model {shown(name)}; the models are {', '.join(self.models)}")
        if version is not None and version != MODEL_VERSION:
            raise ProtocolError(
                404, f"model {shown(name)} has no version {shown(version)}; it has version {MODEL_VERSION}"
            )
        return self.models[name]

    def infer(self, served: Model, headers: Mapping[str, str], body: bytes) -> Reply:
        request, binary = split_binary(headers, body)
        check_request_fields(request)
        inputs = request.get("inputs")
        if not isinstance(inputs, list) or len(inputs) != 1 or not isinstance(inputs[0], dict):
            raise ProtocolError(
                400, f"'inputs' must be a list of one tensor, {shown(served.input_name)} FP32 [N, {config.N_FEATURES}]"
            )
        X = input_rows(inputs[0], served, binary, self.limits)
        binary_out = wants_binary(request, served.output_name)  # the whole request checked before the model runs
        pred = predict(served, X, lambda r: f"row {r}")
        output = {"name": served.output_name, "datatype": "FP32", "shape": [int(pred.size), 1]}
        head = {"model_name": served.name, "model_version": MODEL_VERSION}
        if "id" in request:
            head["id"] = request["id"]
        if binary_out:
            raw = pred.astype("<f4").tobytes()
            output["parameters"] = {"binary_data_size": len(raw)}
            header = json.dumps({**head, "outputs": [output]}, separators=(",", ":")).encode()
            return Reply(
                200,
                header + raw,
                BINARY_TYPE,
                {"Inference-Header-Content-Length": str(len(header))},
                served.name,
                int(pred.size),
            )
        # The predictions as the CLI writes them: numpy's shortest text of each float32.
        prefix = json.dumps({**head, "outputs": [{**output, "data": []}]}, separators=(",", ":"))
        text = prefix[:-4] + join_float32(pred, ",")[:-1] + "]}]}"  # prefix ends with "data":[]}]}
        return Reply(200, text.encode(), model=served.name, rows=int(pred.size))

    def predict_v1(self, served: Model, headers: Mapping[str, str], body: bytes) -> Reply:
        if HEADER_LENGTH in headers:
            raise ProtocolError(400, "V1 :predict takes JSON only; send binary tensors to the V2 infer endpoint")
        request = parse_json_body(body)
        instances = request.get("instances")
        if not isinstance(instances, list) or not instances:
            raise ProtocolError(
                400,
                'expected {"instances": [...]}: a non-empty list of objects keyed by the '
                f"8 feature names ({', '.join(served.predictor.feature_names)})",
            )
        if len(instances) > self.limits.max_rows:
            raise too_many_rows(len(instances), self.limits)
        features = served.predictor.feature_names
        try:
            # Named as the CLI names the same {"instances": [...]} document's records.
            values = validate.record_values(instances, features, lambda i: f"record {i + 1}")
            X = validate.to_float32(values, lambda r, c: f"record {r + 1}, field {features[c]!r}")
        except UserError as err:
            raise ProtocolError(400, str(err)) from None
        pred = predict(served, X, lambda r: f"record {r + 1}")
        text = '{"predictions":[' + join_float32(pred, ",")[:-1] + "]}"
        return Reply(200, text.encode(), model=served.name, rows=int(pred.size))


def expect(method: str, allowed: str) -> None:
    if method != allowed and not (method == "HEAD" and allowed == "GET"):
        raise ProtocolError(405, f"method {method} is not allowed here; use {allowed}")


def too_many_rows(n: int, limits: Limits) -> ProtocolError:
    return ProtocolError(413, f"{n} rows is over the limit of {limits.max_rows} per request; split the request")


def parse_json_body(text: bytes) -> dict:
    try:
        document = json.loads(text, object_pairs_hook=object_without_duplicates)
    except UserError as err:
        raise ProtocolError(400, f"the request body is ambiguous JSON: {err}") from None
    except (ValueError, RecursionError) as err:
        raise ProtocolError(400, f"the request body is not valid JSON ({shown(str(err))})") from None
    if not isinstance(document, dict):
        raise ProtocolError(400, f"the request body must be a JSON object, got {type(document).__name__}")
    return document


def check_request_fields(request: dict) -> None:
    """The optional fields of an infer request, as the V2 schema types them."""
    if "id" in request and not isinstance(request["id"], str):
        raise ProtocolError(400, f"'id' must be a string, got {shown_json(request['id'])}")
    params = request.get("parameters", {})
    if not isinstance(params, dict):
        raise ProtocolError(400, f"'parameters' must be an object, got {shown_json(params)}")
    if "binary_data_output" in params and not isinstance(params["binary_data_output"], bool):
        raise ProtocolError(400, "parameter 'binary_data_output' must be true or false")
    outputs = request.get("outputs")
    asked = [o.get("parameters") for o in outputs if isinstance(o, dict)] if isinstance(outputs, list) else []
    if "classification" in params or any(isinstance(p, dict) and "classification" in p for p in asked):
        raise ProtocolError(400, "classification outputs are not supported: the models are regressions")


def byte_count(text: str | None) -> int | None:
    """A header's byte count, or None unless it is ASCII digits that fit an int64 (str.isdigit
    alone takes '²', and int() refuses 5000 digits)."""
    if text is None or not (text.isascii() and text.isdigit() and len(text) <= 18):
        return None
    return int(text)


def split_binary(headers: Mapping[str, str], body: bytes) -> tuple[dict, bytes]:
    """The JSON header and the binary section after it (empty without the extension)."""
    length = headers.get(HEADER_LENGTH)
    if length is None:
        return parse_json_body(body), b""
    count = byte_count(length)
    if count is None or count > len(body):
        raise ProtocolError(
            400,
            f"Inference-Header-Content-Length {shown(length)} must be a byte count within the body ({len(body)} bytes)",
        )
    return parse_json_body(body[:count]), body[count:]


def input_rows(tensor: dict, served: Model, binary: bytes, limits: Limits) -> np.ndarray:
    """The one input tensor as validated (N, 8) float32 rows."""
    name, datatype, shape = tensor.get("name"), tensor.get("datatype"), tensor.get("shape")
    if name != served.input_name:
        raise ProtocolError(
            400, f"unknown input {shown_json(name)}; model {shown(served.name)} takes {shown(served.input_name)}"
        )
    if datatype != "FP32":
        raise ProtocolError(400, f"input {shown(name)} has datatype {shown_json(datatype)}; expected FP32")
    if not (
        isinstance(shape, list)
        and len(shape) == 2
        and all(type(d) is int for d in shape)
        and shape[0] >= 1
        and shape[1] == config.N_FEATURES
    ):
        raise ProtocolError(
            400, f"input {shown(name)} has shape {shown_json(shape)}; expected [N, {config.N_FEATURES}] with N >= 1"
        )
    n = shape[0]
    if n > limits.max_rows:
        raise too_many_rows(n, limits)
    where = lambda r, c: f"row {r}, column {served.predictor.feature_names[c]!r}"  # noqa: E731
    params = tensor.get("parameters", {})
    if not isinstance(params, dict):
        raise ProtocolError(400, f"input {shown(name)}: 'parameters' must be an object, got {shown_json(params)}")
    size = params.get("binary_data_size")
    if size is not None:
        expected = n * config.N_FEATURES * 4
        if type(size) is not int or size != expected or len(binary) != expected:
            raise ProtocolError(
                400,
                f"input {shown(name)}: binary_data_size {shown_json(size)} with "
                f"{len(binary)} binary bytes; shape {shape} FP32 needs exactly {expected}",
            )
        values = np.frombuffer(binary, "<f4").reshape(n, config.N_FEATURES)  # float32 already
    else:
        if binary:
            raise ProtocolError(
                400, f"the body has {len(binary)} binary bytes but input {shown(name)} does not give binary_data_size"
            )
        values = json_values(tensor.get("data"), name, n, where)
    try:
        return validate.to_float32(values, where)
    except UserError as err:
        raise ProtocolError(400, str(err)) from None


def json_values(data: object, name: str, n: int, where: validate.Where) -> np.ndarray:
    """``data``, flat or as n rows of 8 (row-major), as (n, 8) float64; numbers only."""
    if not isinstance(data, list):
        raise ProtocolError(400, f"input {shown(name)} needs 'data', a list of numbers (flat or nested)")
    if data and isinstance(data[0], list):  # nested: exactly the shape, row by row
        if len(data) != n or not all(isinstance(row, list) and len(row) == config.N_FEATURES for row in data):
            raise ProtocolError(
                400,
                f"input {shown(name)}: nested 'data' must be {n} rows of "
                f"{config.N_FEATURES} numbers, as its shape says (or give it flat)",
            )
        data = list(itertools.chain.from_iterable(data))
    if len(data) != n * config.N_FEATURES:
        raise ProtocolError(
            400,
            f"input {shown(name)} has {len(data)} values; shape [{n}, {config.N_FEATURES}] "
            f"needs {n * config.N_FEATURES}",
        )
    if not set(map(type, data)) <= {int, float}:  # bool, str, list, None, object: not house data
        index = next(i for i, v in enumerate(data) if type(v) not in (int, float))
        raise ProtocolError(
            400, f"{where(*divmod(index, config.N_FEATURES))}: {shown_json(data[index])} is not a number"
        )
    try:
        return np.array(data, dtype=np.float64).reshape(n, config.N_FEATURES)
    except OverflowError:  # an integer beyond float64, so beyond float32 too
        index = next(i for i, v in enumerate(data) if type(v) is int and abs(v) > validate.FLOAT32_MAX)
        raise ProtocolError(
            400, str(validate.out_of_float32(where(*divmod(index, config.N_FEATURES)), data[index]))
        ) from None


def wants_binary(request: dict, output_name: str) -> bool:
    """Binary outputs when the request or its one output asks for them."""
    params = request.get("parameters")
    if isinstance(params, dict) and params.get("binary_data_output") is True:
        return True
    outputs = request.get("outputs")
    if outputs is None:
        return False
    if not (isinstance(outputs, list) and all(isinstance(o, dict) for o in outputs)):
        raise ProtocolError(400, "'outputs' must be a list of objects naming outputs")
    for out in outputs:
        if out.get("name") != output_name:
            raise ProtocolError(
                400, f"unknown output {shown_json(out.get('name'))}; the model gives {shown(output_name)}"
            )
        params = out.get("parameters", {})
        if not isinstance(params, dict) or not isinstance(params.get("binary_data", False), bool):
            raise ProtocolError(
                400, f"output {shown(output_name)}: 'parameters' must be an object whose 'binary_data' is true or false"
            )
    return any(out.get("parameters", {}).get("binary_data") is True for out in outputs)


def predict(served: Model, X: np.ndarray, row_name: Callable[[int], str]) -> np.ndarray:
    try:
        return validate.check_predictions(served.predictor.predict(X), row_name)
    except UserError as err:
        raise ProtocolError(400, str(err)) from None
