"""The Open Inference Protocol's (KServe V2) messages, declared once for both front ends.

The REST adapter (``rest``) builds them from JSON, the gRPC adapter (``grpc_service``) from
protobuf; the data plane (``dataplane``) checks them in one pass and answers with them. A field
that arrives from JSON keeps the value as sent (``object``), so that the one validation pass can
name a wrong value in its message; protobuf's fields are typed already and pass the same checks.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# A parameter map as sent: JSON's object, or protobuf's InferParameter values.
Parameters = dict[str, object]


@dataclass(frozen=True)
class InputTensor:
    """One input tensor. Its values come in exactly one of three forms:

    - ``data``: JSON's numbers, flat or nested row by row (REST);
    - ``raw``: little-endian bytes, row-major (REST's binary extension, gRPC's raw_input_contents),
      with ``raw_size`` the byte count the request declared (REST's binary_data_size);
    - ``typed``: numbers already in a typed array (gRPC's contents.fp32_contents).
    """

    name: object
    datatype: object
    shape: object
    parameters: object = field(default_factory=dict)
    data: object = None
    raw: bytes | None = None
    raw_size: object = None
    typed: np.ndarray | None = None


@dataclass(frozen=True)
class RequestedOutput:
    name: object
    parameters: object = field(default_factory=dict)


@dataclass(frozen=True)
class InferRequest:
    model_name: str
    model_version: str | None  # None: the server's choice (the only version, "1")
    inputs: list[InputTensor]
    outputs: list[RequestedOutput] = field(default_factory=list)
    id: object = None  # echoed; a string when given
    parameters: Parameters = field(default_factory=dict)


@dataclass(frozen=True)
class InferResponse:
    model_name: str
    model_version: str
    output_name: str
    predictions: np.ndarray  # (N,) float32, checked finite
    id: str | None = None

    @property
    def rows(self) -> int:
        return int(self.predictions.size)


@dataclass(frozen=True)
class TensorMetadata:
    name: str
    datatype: str
    shape: list[int]


@dataclass(frozen=True)
class ModelMetadata:
    name: str
    versions: list[str]
    platform: str
    inputs: list[TensorMetadata]
    outputs: list[TensorMetadata]
    parameters: dict[str, object] = field(default_factory=dict)


@dataclass(frozen=True)
class ServerMetadata:
    name: str
    version: str
    extensions: list[str]
