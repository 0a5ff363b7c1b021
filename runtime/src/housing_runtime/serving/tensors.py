"""An input tensor -> validated float32 rows, whichever form its values came in (JSON data flat
or nested, raw little-endian bytes, gRPC's typed contents), and the rows -> checked predictions:
every check on shapes, datatypes and values (through ``validate``, so a bad value gets the batch
CLI's words)."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import numpy as np

from housing_runtime import config, validate
from housing_runtime.errors import UserError, shown, shown_json
from housing_runtime.serving.errors import InvalidRequest, TooLarge
from housing_runtime.serving.messages import Limits, Model
from housing_runtime.serving.types import InputTensor


def too_many_rows(n: int, limits: Limits) -> TooLarge:
    return TooLarge(f"{n} rows is over the limit of {limits.max_rows} per request; split the request")


def tensor_rows(tensor: InputTensor, served: Model, limits: Limits) -> np.ndarray:
    """The one input tensor as validated (N, 8) float32 rows, whichever form its values came in."""
    name, datatype, shape = tensor.name, tensor.datatype, tensor.shape
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
    if not isinstance(tensor.parameters, dict):
        raise InvalidRequest(
            f"input {shown(name)}: 'parameters' must be an object, got {shown_json(tensor.parameters)}"
        )
    if tensor.raw is not None:
        values = raw_values(tensor, n)
    elif tensor.typed is not None:
        values = typed_values(tensor.typed, name, n)
    else:
        values = json_values(tensor.data, name, n, where)
    try:
        return validate.to_float32(values, where)
    except UserError as err:
        raise InvalidRequest(str(err)) from None


def raw_values(tensor: InputTensor, n: int) -> np.ndarray:
    """Raw little-endian float32 bytes (REST's binary extension, gRPC's raw_input_contents) as (n, 8):
    exactly the bytes the shape needs, and, over REST, exactly the byte count declared."""
    raw, size, expected = tensor.raw or b"", tensor.raw_size, n * config.N_FEATURES * 4
    if size is not None and (type(size) is not int or size != expected) or len(raw) != expected:
        declared = f"binary_data_size {shown_json(size)} with " if size is not None else ""
        raise InvalidRequest(
            f"input {shown(tensor.name)}: {declared}{len(raw)} raw bytes; "
            f"shape [{n}, {config.N_FEATURES}] FP32 needs exactly {expected}"
        )
    return np.frombuffer(raw, "<f4").reshape(n, config.N_FEATURES)  # float32 already


def typed_values(values: np.ndarray, name: object, n: int) -> np.ndarray:
    """Typed contents (gRPC's fp32_contents) as (n, 8): exactly as many as the shape says."""
    if values.size != n * config.N_FEATURES:
        raise InvalidRequest(
            f"input {shown(name)} has {values.size} values; shape [{n}, {config.N_FEATURES}] "
            f"needs {n * config.N_FEATURES}"
        )
    return values.reshape(n, config.N_FEATURES)


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


def predict(served: Model, X: np.ndarray, row_name: Callable[[int], str]) -> np.ndarray:
    try:
        return validate.check_predictions(served.predictor.predict(X), row_name)
    except UserError as err:
        raise InvalidRequest(str(err)) from None
