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

Every client fault is a ``ServingError`` (``errors``): a named class, a status and one line.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping

from housing_runtime import config, validate
from housing_runtime.errors import UserError, shown
from housing_runtime.io.native import join_float32
from housing_runtime.serving.errors import InvalidRequest, NotFound, ServingError, Unavailable
from housing_runtime.serving.messages import (
    BINARY_TYPE,
    EXTENSIONS,
    HEADER_LENGTH,
    MODEL_VERSION,
    SERVER_NAME,
    SERVER_VERSION,
    Limits,
    Model,
    Reply,
    error_reply,
    json_reply,
)
from housing_runtime.serving.tensors import (
    check_request_fields,
    expect,
    input_rows,
    parse_json_body,
    predict,
    split_binary,
    too_many_rows,
    wants_binary,
)

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
            raise NotFound(f"no route {shown(path)}; see /v2 and /v2/models/{{name}}")
        except ServingError as err:
            return error_reply(err, model)

    def label(self, name: str) -> str:
        """The model's name for metrics and logs: a name nobody serves is "unknown", so that
        clients cannot create a metric series per made-up name."""
        return name if name in self.models else "unknown"

    def model(self, name: str, version: str | None) -> Model:
        if not self.loaded:
            raise Unavailable("the models are still loading; retry once /v2/health/ready answers 200")
        if name not in self.models:
            raise NotFound(f"unknown model {shown(name)}; the models are {', '.join(self.models)}")
        if version is not None and version != MODEL_VERSION:
            raise NotFound(f"model {shown(name)} has no version {shown(version)}; it has version {MODEL_VERSION}")
        return self.models[name]

    def infer(self, served: Model, headers: Mapping[str, str], body: bytes) -> Reply:
        request, binary = split_binary(headers, body)
        check_request_fields(request)
        inputs = request.get("inputs")
        if not isinstance(inputs, list) or len(inputs) != 1 or not isinstance(inputs[0], dict):
            raise InvalidRequest(
                f"'inputs' must be a list of one tensor, {shown(served.input_name)} FP32 [N, {config.N_FEATURES}]"
            )
        X = input_rows(inputs[0], served, binary, self.limits)
        binary_out = wants_binary(request, served.output_name)  # the whole request checked before the model runs
        pred = predict(served, X, lambda r: f"row {r}")
        output: dict[str, object] = {"name": served.output_name, "datatype": "FP32", "shape": [int(pred.size), 1]}
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
            raise InvalidRequest("V1 :predict takes JSON only; send binary tensors to the V2 infer endpoint")
        request = parse_json_body(body)
        instances = request.get("instances")
        if not isinstance(instances, list) or not instances:
            raise InvalidRequest(
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
            raise InvalidRequest(str(err)) from None
        pred = predict(served, X, lambda r: f"record {r + 1}")
        text = '{"predictions":[' + join_float32(pred, ",")[:-1] + "]}"
        return Reply(200, text.encode(), model=served.name, rows=int(pred.size))
