"""What the serving layer passes around: the served ``Model``, the request
``Limits``, and the ``Reply`` the server sends."""

from __future__ import annotations

from dataclasses import dataclass, field

import orjson

from housing_runtime import DISTRIBUTION, version
from housing_runtime.model import Predictor
from housing_runtime.serving.errors import ServingError
from housing_runtime.serving.options import MAX_ROWS

SERVER_NAME = DISTRIBUTION
SERVER_VERSION = version()  # the installed distribution's (its metadata), read once
MODEL_VERSION = "1"
PLATFORM = "onnxruntime_onnx"
EXTENSIONS = ["binary_tensor_data"]
JSON_TYPE = "application/json"
BINARY_TYPE = "application/octet-stream"
HEADER_LENGTH = "inference-header-content-length"


@dataclass
class Reply:
    status: int
    body: bytes
    content_type: str = JSON_TYPE
    headers: dict = field(default_factory=dict)
    model: str = ""  # for metrics and the access log
    rows: int = 0


def json_bytes(document: object) -> bytes:
    return orjson.dumps(document)  # compact, as json.dumps with separators=(",", ":")


def json_reply(status: int, document: object, model: str = "") -> Reply:
    return Reply(status, json_bytes(document), model=model)


def error_reply(err: ServingError, model: str = "") -> Reply:
    return json_reply(err.http_status, {"error": str(err)}, model)


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


@dataclass
class Limits:
    max_rows: int = MAX_ROWS
