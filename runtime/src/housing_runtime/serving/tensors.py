"""V2 request bodies -> float32 rows, and the rows' predictions -> output tensors: JSON data
(flat or nested), Triton's binary tensor data extension, and every check on shapes, datatypes
and values (through ``validate``, so a bad value gets the batch CLI's words)."""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Mapping

import numpy as np

from housing_runtime import config, validate
from housing_runtime.errors import UserError, shown, shown_json
from housing_runtime.io.json_values import object_without_duplicates
from housing_runtime.serving.errors import InvalidRequest, MethodNotAllowed, TooLarge
from housing_runtime.serving.messages import HEADER_LENGTH, Limits, Model


def expect(method: str, allowed: str) -> None:
    if method != allowed and not (method == "HEAD" and allowed == "GET"):
        raise MethodNotAllowed(f"method {method} is not allowed here; use {allowed}")


def too_many_rows(n: int, limits: Limits) -> TooLarge:
    return TooLarge(f"{n} rows is over the limit of {limits.max_rows} per request; split the request")


def parse_json_body(text: bytes) -> dict:
    try:
        document = json.loads(text, object_pairs_hook=object_without_duplicates)
    except UserError as err:
        raise InvalidRequest(f"the request body is ambiguous JSON: {err}") from None
    except (ValueError, RecursionError) as err:
        raise InvalidRequest(f"the request body is not valid JSON ({shown(str(err))})") from None
    if not isinstance(document, dict):
        raise InvalidRequest(f"the request body must be a JSON object, got {type(document).__name__}")
    return document


def check_request_fields(request: dict) -> None:
    """The optional fields of an infer request, as the V2 schema types them."""
    if "id" in request and not isinstance(request["id"], str):
        raise InvalidRequest(f"'id' must be a string, got {shown_json(request['id'])}")
    params = request.get("parameters", {})
    if not isinstance(params, dict):
        raise InvalidRequest(f"'parameters' must be an object, got {shown_json(params)}")
    if "binary_data_output" in params and not isinstance(params["binary_data_output"], bool):
        raise InvalidRequest("parameter 'binary_data_output' must be true or false")
    outputs = request.get("outputs")
    asked = [o.get("parameters") for o in outputs if isinstance(o, dict)] if isinstance(outputs, list) else []
    if "classification" in params or any(isinstance(p, dict) and "classification" in p for p in asked):
        raise InvalidRequest("classification outputs are not supported: the models are regressions")


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


def input_rows(tensor: dict, served: Model, binary: bytes, limits: Limits) -> np.ndarray:
    """The one input tensor as validated (N, 8) float32 rows."""
    name, datatype, shape = tensor.get("name"), tensor.get("datatype"), tensor.get("shape")
    if name != served.input_name:
        raise InvalidRequest(
            f"unknown input {shown_json(name)}; model {shown(served.name)} takes {shown(served.input_name)}"
        )
    if datatype != "FP32":
        raise InvalidRequest(f"input {shown(name)} has datatype {shown_json(datatype)}; expected FP32")
    if not (
        isinstance(shape, list)
        and len(shape) == 2
        and all(type(d) is int for d in shape)
        and shape[0] >= 1
        and shape[1] == config.N_FEATURES
    ):
        raise InvalidRequest(
            f"input {shown(name)} has shape {shown_json(shape)}; expected [N, {config.N_FEATURES}] with N >= 1"
        )
    n = shape[0]
    if n > limits.max_rows:
        raise too_many_rows(n, limits)
    where = lambda r, c: f"row {r}, column {served.predictor.feature_names[c]!r}"  # noqa: E731
    params = tensor.get("parameters", {})
    if not isinstance(params, dict):
        raise InvalidRequest(f"input {shown(name)}: 'parameters' must be an object, got {shown_json(params)}")
    size = params.get("binary_data_size")
    if size is not None:
        expected = n * config.N_FEATURES * 4
        if type(size) is not int or size != expected or len(binary) != expected:
            raise InvalidRequest(
                f"input {shown(name)}: binary_data_size {shown_json(size)} with "
                f"{len(binary)} binary bytes; shape {shape} FP32 needs exactly {expected}",
            )
        values = np.frombuffer(binary, "<f4").reshape(n, config.N_FEATURES)  # float32 already
    else:
        if binary:
            raise InvalidRequest(
                f"the body has {len(binary)} binary bytes but input {shown(name)} does not give binary_data_size"
            )
        values = json_values(tensor.get("data"), name, n, where)
    try:
        return validate.to_float32(values, where)
    except UserError as err:
        raise InvalidRequest(str(err)) from None


def json_values(data: object, name: str, n: int, where: validate.Where) -> np.ndarray:
    """``data``, flat or as n rows of 8 (row-major), as (n, 8) float64; numbers only."""
    if not isinstance(data, list):
        raise InvalidRequest(f"input {shown(name)} needs 'data', a list of numbers (flat or nested)")
    if data and isinstance(data[0], list):  # nested: exactly the shape, row by row
        if len(data) != n or not all(isinstance(row, list) and len(row) == config.N_FEATURES for row in data):
            raise InvalidRequest(
                f"input {shown(name)}: nested 'data' must be {n} rows of "
                f"{config.N_FEATURES} numbers, as its shape says (or give it flat)",
            )
        data = list(itertools.chain.from_iterable(data))
    if len(data) != n * config.N_FEATURES:
        raise InvalidRequest(
            f"input {shown(name)} has {len(data)} values; shape [{n}, {config.N_FEATURES}] "
            f"needs {n * config.N_FEATURES}",
        )
    if not set(map(type, data)) <= {int, float}:  # bool, str, list, None, object: not house data
        index = next(i for i, v in enumerate(data) if type(v) not in (int, float))
        raise InvalidRequest(f"{where(*divmod(index, config.N_FEATURES))}: {shown_json(data[index])} is not a number")
    try:
        return np.array(data, dtype=np.float64).reshape(n, config.N_FEATURES)
    except OverflowError:  # an integer beyond float64, so beyond float32 too
        index = next(i for i, v in enumerate(data) if type(v) is int and abs(v) > validate.FLOAT32_MAX)
        raise InvalidRequest(
            str(validate.out_of_float32(where(*divmod(index, config.N_FEATURES)), data[index]))
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
        raise InvalidRequest("'outputs' must be a list of objects naming outputs")
    for out in outputs:
        if out.get("name") != output_name:
            raise InvalidRequest(f"unknown output {shown_json(out.get('name'))}; the model gives {shown(output_name)}")
        params = out.get("parameters", {})
        if not isinstance(params, dict) or not isinstance(params.get("binary_data", False), bool):
            raise InvalidRequest(
                f"output {shown(output_name)}: 'parameters' must be an object whose 'binary_data' is true or false"
            )
    return any(out.get("parameters", {}).get("binary_data") is True for out in outputs)


def predict(served: Model, X: np.ndarray, row_name: Callable[[int], str]) -> np.ndarray:
    try:
        return validate.check_predictions(served.predictor.predict(X), row_name)
    except UserError as err:
        raise InvalidRequest(str(err)) from None
