"""The Open Inference Protocol (KServe V2) and KServe V1 over HTTP, without a web framework: a
thin adapter from (method, path, headers, body) to the data plane and back to a ``Reply``. The
server module only moves bytes, so every HTTP rule is unit-testable here.

- V2 REST (kserve docs/predict-api/v2/required_api.md): health, server and model metadata,
  model readiness, and infer, with data flat or nested, Triton's binary tensor extension, and
  the request id echoed (``rest_codec``).
- V1: ``POST /v1/models/{m}:predict`` with {"instances": [records]}, the CLI's JSON records.

The routes are the table ROUTES. A path no route matches is a 404; a path some route matches
with another method is a 405 naming the method to use (HEAD is GET without the body).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from housing_runtime.errors import shown
from housing_runtime.serving.dataplane import DataPlane
from housing_runtime.serving.errors import InvalidRequest, MethodNotAllowed, NotFound, ServingError
from housing_runtime.serving.messages import HEADER_LENGTH, Model, Reply, error_reply, json_reply
from housing_runtime.serving.rest_codec import (
    infer_reply,
    infer_request,
    metadata_reply,
    parse_json_body,
    predictions_reply,
    split_binary,
)


@dataclass(frozen=True)
class Route:
    """``method`` on ``template``, whose {placeholders} match one path segment each, answered
    by the adapter's method ``handler`` with the placeholders as keyword arguments."""

    method: str
    template: str
    handler: str
    pattern: re.Pattern = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        regex = re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(self.template))
        object.__setattr__(self, "pattern", re.compile(regex))

    def allows(self, method: str) -> bool:
        return method == self.method or (method == "HEAD" and self.method == "GET")


ROUTES = (
    Route("GET", "/v2/health/live", "server_live"),
    Route("GET", "/v2/health/ready", "server_ready"),
    Route("GET", "/v2", "server_metadata"),
    Route("GET", "/v2/models/{model}", "model_metadata"),
    Route("GET", "/v2/models/{model}/versions/{version}", "model_metadata"),
    Route("GET", "/v2/models/{model}/ready", "model_ready"),
    Route("GET", "/v2/models/{model}/versions/{version}/ready", "model_ready"),
    Route("POST", "/v2/models/{model}/infer", "infer"),
    Route("POST", "/v2/models/{model}/versions/{version}/infer", "infer"),
    Route("POST", "/v1/models/{model}:predict", "predict_v1"),
)


class RestAdapter:
    """Routes a request to its handler over ``plane``, the data plane both front ends share."""

    def __init__(self, plane: DataPlane | None = None):
        self.plane = plane or DataPlane()

    # The data plane's state, for the server's start and stop.
    @property
    def ready(self) -> bool:
        return self.plane.ready

    @property
    def stopping(self) -> bool:
        return self.plane.stopping

    @stopping.setter
    def stopping(self, value: bool) -> None:
        self.plane.stopping = value

    def load(self, models: Mapping[str, Model]) -> None:
        self.plane.load(models)

    def handle(self, method: str, path: str, headers: Mapping[str, str], body: bytes) -> Reply:
        """The reply to one request; never raises for anything the client sent."""
        model = ""
        try:
            matches = [(route, match) for route in ROUTES if (match := route.pattern.fullmatch(path))]
            if not matches:
                raise NotFound(f"no route {shown(path)}; see /v2 and /v2/models/{{name}}")
            params = matches[0][1].groupdict()
            model = self.plane.label(params["model"]) if "model" in params else ""
            for route, match in matches:
                if route.allows(method):
                    return getattr(self, route.handler)(headers, body, **match.groupdict())
            self.check_model(params)  # an unknown model is a 404 whatever the method
            raise MethodNotAllowed(f"method {method} is not allowed here; use {matches[0][0].method}")
        except ServingError as err:
            return error_reply(err, model)

    def check_model(self, params: dict[str, str]) -> None:
        if "model" in params:
            self.plane.model(params["model"], params.get("version"))

    def server_live(self, headers: Mapping[str, str], body: bytes) -> Reply:
        return json_reply(200, {"live": self.plane.live})

    def server_ready(self, headers: Mapping[str, str], body: bytes) -> Reply:
        ready = self.plane.ready
        return json_reply(200 if ready else 503, {"ready": ready})

    def server_metadata(self, headers: Mapping[str, str], body: bytes) -> Reply:
        return metadata_reply(self.plane.server_metadata())

    def model_metadata(self, headers: Mapping[str, str], body: bytes, model: str, version: str | None = None) -> Reply:
        return metadata_reply(self.plane.model_metadata(model, version), model)

    def model_ready(self, headers: Mapping[str, str], body: bytes, model: str, version: str | None = None) -> Reply:
        ready = self.plane.model_ready(model, version)
        return json_reply(200 if ready else 503, {"name": model, "ready": ready}, model)

    def infer(self, headers: Mapping[str, str], body: bytes, model: str, version: str | None = None) -> Reply:
        self.plane.model(model, version)  # an unknown model is named before the body is read
        document, binary = split_binary(headers, body)
        request, binary_out = infer_request(model, version, document, binary)
        return infer_reply(self.plane.infer(request), binary_out)

    def predict_v1(self, headers: Mapping[str, str], body: bytes, model: str) -> Reply:
        self.plane.model(model, None)
        if HEADER_LENGTH in headers:
            raise InvalidRequest("V1 :predict takes JSON only; send binary tensors to the V2 infer endpoint")
        instances = parse_json_body(body).get("instances")
        return predictions_reply(model, self.plane.predict_records(model, instances))
