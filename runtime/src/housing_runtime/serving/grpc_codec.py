"""V2 gRPC messages <-> the data plane's ``types``: the protobuf request checked only for what
protobuf alone can get wrong (a message that does not parse, one input's contents given twice
ways), every other check being the data plane's, the same as over HTTP."""

from __future__ import annotations

import numpy as np
from google.protobuf.message import DecodeError

from housing_runtime.serving.errors import InvalidRequest
from housing_runtime.serving.proto import grpc_predict_v2_pb2 as pb
from housing_runtime.serving.types import InferRequest, InferResponse, InputTensor, RequestedOutput


def parsed(message_class, data: bytes):
    """``data`` as a ``message_class``; a message that is not one is the client's mistake."""
    try:
        return message_class.FromString(data)
    except DecodeError:
        raise InvalidRequest(
            f"the message is not a valid {message_class.DESCRIPTOR.full_name} (protobuf wire format); "
            "check the client's stubs against the service's proto"
        ) from None


def infer_request(request: pb.ModelInferRequest) -> InferRequest:
    """The protobuf request as ``types``; raw contents go with the input at the same position."""
    raw = request.raw_input_contents
    if len(request.inputs) != 1:  # refused before any contents are converted (the data plane's words)
        return InferRequest(request.model_name, request.model_version or None, inputs=[])
    if raw and len(raw) != len(request.inputs):
        raise InvalidRequest(
            f"raw_input_contents has {len(raw)} entries for {len(request.inputs)} inputs; give one per input"
        )
    inputs = []
    for i, tensor in enumerate(request.inputs):
        typed = typed_contents(tensor)
        if raw and typed is not None:
            raise InvalidRequest(f"input {tensor.name!r} gives contents and raw_input_contents; give one of them")
        inputs.append(
            InputTensor(
                name=tensor.name,
                datatype=tensor.datatype,
                shape=list(tensor.shape),
                parameters=parameters(tensor.parameters),
                raw=raw[i] if raw else None,
                typed=typed if typed is not None else np.empty(0, np.float32),
            )
        )
    return InferRequest(
        model_name=request.model_name,
        model_version=request.model_version or None,
        inputs=inputs,
        outputs=[RequestedOutput(o.name, parameters(o.parameters)) for o in request.outputs],
        id=request.id or None,
        parameters=parameters(request.parameters),
    )


def typed_contents(tensor: pb.ModelInferRequest.InferInputTensor) -> np.ndarray | None:
    """The input's typed contents as float32, or None when it gives none. Only fp32_contents
    fits an FP32 input: another field's values are refused, not converted."""
    contents = tensor.contents
    if not contents.ListFields():  # absent, or empty: proto3 cannot tell them apart
        return None
    for field, _ in contents.ListFields():
        if field.name != "fp32_contents":
            raise InvalidRequest(
                f"input {tensor.name!r} gives {field.name}; an FP32 input takes fp32_contents or raw_input_contents"
            )
    return np.array(contents.fp32_contents, dtype=np.float32)


def parameters(params) -> dict[str, object]:
    """A protobuf parameter map as plain values (bool, int or str)."""
    return {
        key: getattr(value, value.WhichOneof("parameter_choice") or "string_param") for key, value in params.items()
    }


def infer_response(response: InferResponse, raw: bool) -> pb.ModelInferResponse:
    output = pb.ModelInferResponse.InferOutputTensor(
        name=response.output_name, datatype="FP32", shape=[response.rows, 1]
    )
    message = pb.ModelInferResponse(
        model_name=response.model_name,
        model_version=response.model_version,
        id=response.id or "",
        outputs=[output],
    )
    if raw:
        message.raw_output_contents.append(response.predictions.astype("<f4").tobytes())
    else:
        message.outputs[0].contents.fp32_contents.extend(response.predictions.tolist())
    return message
