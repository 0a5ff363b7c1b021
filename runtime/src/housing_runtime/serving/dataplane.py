"""The one place that answers the Open Inference Protocol: readiness, metadata and inference over
the served models. Both front ends are thin adapters over it: ``rest`` (HTTP/JSON, Triton's
binary extension, KServe V1) and ``grpc_service`` (gRPC). So the same request gets the same
checks, the same answer and the same words whichever way it came; a refusal is a named
``errors.ServingError``, which each front end maps to its own status.

The checks run in one pass, in the order a client would fix them: the model and version, the
request's parameters and outputs, the one input tensor (name, datatype, shape, row limit,
values: through ``validate``, so a bad value gets the batch CLI's words), then the predictions.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from housing_runtime import config, validate
from housing_runtime.errors import UserError, shown, shown_json
from housing_runtime.serving.errors import InvalidRequest, NotFound, Unavailable
from housing_runtime.serving.messages import (
    EXTENSIONS,
    MODEL_VERSION,
    PLATFORM,
    SERVER_NAME,
    SERVER_VERSION,
    Limits,
    Model,
)
from housing_runtime.serving.tensors import predict, tensor_rows, too_many_rows
from housing_runtime.serving.types import (
    InferRequest,
    InferResponse,
    ModelMetadata,
    RequestedOutput,
    ServerMetadata,
    TensorMetadata,
)


class DataPlane:
    """The served models, and whether the server is ready: once they are loaded (``load``) and
    until shutdown begins (``stopping``)."""

    def __init__(self, models: Mapping[str, Model] | None = None, limits: Limits | None = None):
        self.models = dict(models or {})
        self.limits = limits or Limits()
        self.loaded = bool(self.models)
        self.stopping = False

    def load(self, models: Mapping[str, Model]) -> None:
        self.models = dict(models)
        self.loaded = True

    @property
    def live(self) -> bool:
        return True  # the process answers: that is all liveness means

    @property
    def ready(self) -> bool:
        return self.loaded and not self.stopping

    def label(self, name: str) -> str:
        """The model's name for metrics and logs: a name nobody serves is "unknown", so that
        clients cannot create a metric series per made-up name."""
        return name if name in self.models else "unknown"

    def model(self, name: str, version: str | None) -> Model:
        """The served model ``name`` at ``version`` (None or "" for the server's choice)."""
        if not self.loaded:
            raise Unavailable("the models are still loading; retry once /v2/health/ready answers 200")
        if name not in self.models:
            raise NotFound(f"unknown model {shown(name)}; the models are {', '.join(self.models)}")
        if version and version != MODEL_VERSION:
            raise NotFound(f"model {shown(name)} has no version {shown(version)}; it has version {MODEL_VERSION}")
        return self.models[name]

    def model_ready(self, name: str, version: str | None) -> bool:
        self.model(name, version)
        return self.ready

    def server_metadata(self) -> ServerMetadata:
        return ServerMetadata(SERVER_NAME, SERVER_VERSION, list(EXTENSIONS))

    def model_metadata(self, name: str, version: str | None) -> ModelMetadata:
        served = self.model(name, version)
        return ModelMetadata(
            name=served.name,
            versions=[MODEL_VERSION],
            platform=PLATFORM,
            inputs=[TensorMetadata(served.input_name, "FP32", [-1, config.N_FEATURES])],
            outputs=[TensorMetadata(served.output_name, "FP32", [-1, 1])],
            parameters={"feature_names": list(served.predictor.feature_names)},
        )

    def infer(self, request: InferRequest) -> InferResponse:
        """The predictions for ``request``'s one input tensor, every check made first."""
        served = self.model(request.model_name, request.model_version)
        check_parameters(request)
        check_outputs(request.outputs, served.output_name)
        if len(request.inputs) != 1:
            raise InvalidRequest(
                f"'inputs' must be a list of one tensor, {shown(served.input_name)} FP32 [N, {config.N_FEATURES}]"
            )
        X = tensor_rows(request.inputs[0], served, self.limits)
        pred = predict(served, X, lambda r: f"row {r}")
        request_id = request.id if isinstance(request.id, str) else None
        return InferResponse(served.name, MODEL_VERSION, served.output_name, pred, request_id)

    def predict_records(self, name: str, instances: object) -> np.ndarray:
        """KServe V1: the predictions for a non-empty list of records keyed by feature name,
        named as the CLI names the same {"instances": [...]} document's records."""
        served = self.model(name, None)
        features = served.predictor.feature_names
        if not isinstance(instances, list) or not instances:
            raise InvalidRequest(
                'expected {"instances": [...]}: a non-empty list of objects keyed by the '
                f"8 feature names ({', '.join(features)})"
            )
        if len(instances) > self.limits.max_rows:
            raise too_many_rows(len(instances), self.limits)
        try:
            values = validate.record_values(instances, features, lambda i: f"record {i + 1}")
            X = validate.to_float32(values, lambda r, c: f"record {r + 1}, field {features[c]!r}")
        except UserError as err:
            raise InvalidRequest(str(err)) from None
        return predict(served, X, lambda r: f"record {r + 1}")


def check_parameters(request: InferRequest) -> None:
    """The request's parameters as the V2 schema types them; classification is refused."""
    if request.id is not None and not isinstance(request.id, str):
        raise InvalidRequest(f"'id' must be a string, got {shown_json(request.id)}")
    if not isinstance(request.parameters, dict):
        raise InvalidRequest(f"'parameters' must be an object, got {shown_json(request.parameters)}")
    asked = [out.parameters for out in request.outputs]
    if "classification" in request.parameters or any(isinstance(p, dict) and "classification" in p for p in asked):
        raise InvalidRequest("classification outputs are not supported: the models are regressions")


def check_outputs(outputs: list[RequestedOutput], output_name: str) -> None:
    """Requested outputs may only name the model's one output."""
    for out in outputs:
        if out.name != output_name:
            raise InvalidRequest(f"unknown output {shown_json(out.name)}; the model gives {shown(output_name)}")
