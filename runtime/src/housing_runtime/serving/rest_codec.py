"""V2 REST bodies <-> the data plane's ``types``: JSON (flat or nested data), Triton's binary
tensor data extension, and the JSON answers.

- Binary extension: a JSON header of ``Inference-Header-Content-Length`` bytes, then each binary
  input's raw little-endian bytes in order (``binary_data_size``). Outputs come back binary when
  an output asks (``binary_data``) or the request does (``binary_data_output``, which
  tritonclient sends when it names no outputs).
- Only what JSON alone can get wrong is checked here (a list that is not one, a flag that is not
  a boolean); every other check is the data plane's, the same for gRPC.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict

from housing_runtime.errors import UserError, shown
from housing_runtime.io.json_values import BadJson, DuplicateKey, loads_json
from housing_runtime.io.native import join_float32
from housing_runtime.serving.errors import InvalidRequest
from housing_runtime.serving.messages import BINARY_TYPE, HEADER_LENGTH, Reply, json_bytes, json_reply
from housing_runtime.serving.types import InferRequest, InferResponse, InputTensor, RequestedOutput


def metadata_reply(metadata: object, model: str = "") -> Reply:
    """A metadata dataclass (``types``) as its V2 JSON object."""
    return json_reply(200, asdict(metadata), model)  # type: ignore[call-overload]


def parse_json_body(text: bytes) -> dict:
    """The body's JSON object, parsed by orjson where it cannot differ from json (loads_json)."""
    try:
        document = loads_json(text)
    except DuplicateKey as err:
        raise InvalidRequest(f"the request body is ambiguous JSON: {err}") from None
    except BadJson as err:
        raise InvalidRequest(f"the request body is not valid JSON ({err.why})") from None
    except UserError as err:  # nested too deeply
        raise InvalidRequest(f"the request body is not valid JSON ({err})") from None
    if not isinstance(document, dict):
        raise InvalidRequest(f"the request body must be a JSON object, got {type(document).__name__}")
    return document


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
        raise InvalidRequest(
            f"Inference-Header-Content-Length {shown(length)} must be a byte count within the body ({len(body)} bytes)",
        )
    return parse_json_body(body[:count]), body[count:]


def infer_request(model: str, version: str | None, document: dict, binary: bytes) -> tuple[InferRequest, bool]:
    """The typed request, and whether the answer goes binary."""
    inputs = document.get("inputs")
    tensors = (
        [input_tensor(t, binary) for t in inputs] if isinstance(inputs, list) and is_list_of_objects(inputs) else []
    )
    outputs = document.get("outputs")
    if outputs is not None and not is_list_of_objects(outputs):
        raise InvalidRequest("'outputs' must be a list of objects naming outputs")
    requested = [RequestedOutput(o.get("name"), o.get("parameters", {})) for o in outputs] if outputs else []
    request = InferRequest(
        model_name=model,
        model_version=version,
        inputs=tensors,
        outputs=requested,
        id=document.get("id"),
        parameters=document.get("parameters", {}),
    )
    return request, wants_binary(request)


def is_list_of_objects(value: object) -> bool:
    return isinstance(value, list) and all(isinstance(v, dict) for v in value)


def input_tensor(tensor: dict, binary: bytes) -> InputTensor:
    """One input: its values as JSON data, or (with binary_data_size) the binary section."""
    params = tensor.get("parameters", {})
    size = params.get("binary_data_size") if isinstance(params, dict) else None
    if size is None and binary:
        raise InvalidRequest(
            f"the body has {len(binary)} binary bytes but input {shown(tensor.get('name'))} "
            "does not give binary_data_size"
        )
    return InputTensor(
        name=tensor.get("name"),
        datatype=tensor.get("datatype"),
        shape=tensor.get("shape"),
        parameters=params,
        data=tensor.get("data") if size is None else None,
        raw=binary if size is not None else None,
        raw_size=size,
    )


def wants_binary(request: InferRequest) -> bool:
    """Binary outputs when the request or one of its outputs asks for them."""
    params = request.parameters
    if isinstance(params, dict) and "binary_data_output" in params:
        if not isinstance(params["binary_data_output"], bool):
            raise InvalidRequest("parameter 'binary_data_output' must be true or false")
        if params["binary_data_output"]:
            return True
    asked = False
    for out in request.outputs:
        out_params = out.parameters
        if not isinstance(out_params, dict) or not isinstance(out_params.get("binary_data", False), bool):
            raise InvalidRequest(
                f"output {shown(out.name)}: 'parameters' must be an object whose 'binary_data' is true or false"
            )
        asked = asked or out_params.get("binary_data") is True
    return asked


def infer_reply(response: InferResponse, binary: bool) -> Reply:
    """The V2 answer: the predictions as binary float32, or as the CLI writes them (numpy's
    shortest text of each float32) in JSON."""
    pred = response.predictions
    output: dict[str, object] = {"name": response.output_name, "datatype": "FP32", "shape": [response.rows, 1]}
    head: dict[str, object] = {"model_name": response.model_name, "model_version": response.model_version}
    if response.id is not None:
        head["id"] = response.id
    if binary:
        raw = pred.astype("<f4").tobytes()
        output["parameters"] = {"binary_data_size": len(raw)}
        header = json_bytes({**head, "outputs": [output]})
        return Reply(
            200,
            header + raw,
            BINARY_TYPE,
            {"Inference-Header-Content-Length": str(len(header))},
            response.model_name,
            response.rows,
        )
    prefix = json_bytes({**head, "outputs": [{**output, "data": []}]})  # ends with "data":[]}]}
    text = prefix[:-4] + join_float32(pred, ",")[:-1].encode() + b"]}]}"
    return Reply(200, text, model=response.model_name, rows=response.rows)


def predictions_reply(model: str, pred) -> Reply:
    """KServe V1's answer: {"predictions": [...]}, each as the CLI writes it."""
    text = b'{"predictions":[' + join_float32(pred, ",")[:-1].encode() + b"]}"
    return Reply(200, text, model=model, rows=int(pred.size))
