"""What makes input acceptable: the one validation core that every front end uses, so that
the same bad value gets the same words everywhere.

Readers turn text into float64 values and say where each came from (``Where``); this module
decides whether the values can be predicted: a number, finite, and still finite once cast to
the float32 the models take (1e39 is a finite float64 but infinity in float32).
"""

from __future__ import annotations

import itertools
import math
import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from housing_runtime.errors import UserError, shown, shown_json

# where(row, column) -> "line 7, column 'MedInc'": names a value for an error message;
# column is an index in model feature order.
Where = Callable[[int, int], str]
FLOAT32_MAX = float(np.finfo(np.float32).max)


@dataclass(frozen=True)
class Batch:
    """Rows ready for the model, and how to name each of them in an error."""

    X: np.ndarray  # (k, 8) float32, C-contiguous, every value finite
    row_name: Callable[[int], str]  # "line 7", "record 3"


def not_finite(where: str, value: float) -> UserError:
    return UserError(f"{where}: {value} is not a finite number (NaN and infinity cannot be predicted)")


def out_of_float32(where: str, value: object) -> UserError:
    return UserError(
        f"{where}: {shown(value)} is outside float32's range (about ±3.4e38); the models compute in float32"
    )


def to_float32(values: np.ndarray, where: Where) -> np.ndarray:
    """(k, 8) float64 -> float32, refusing NaN, infinity and values that overflow float32."""
    with np.errstate(over="ignore", invalid="ignore"):
        X = np.ascontiguousarray(values, dtype=np.float32)
    if not np.isfinite(X).all():
        row, col = (int(i) for i in np.argwhere(~np.isfinite(X))[0])
        value = float(values[row, col])
        raise (
            not_finite(where(row, col), value) if not math.isfinite(value) else out_of_float32(where(row, col), value)
        )
    return X


def check_predictions(pred: np.ndarray, row_name: Callable[[int], str]) -> np.ndarray:
    """A prediction that is not finite (inputs near float32's limits can overflow the sum) is an
    error naming the row, never printed as inf."""
    if not np.isfinite(pred).all():
        row = int(np.argwhere(~np.isfinite(pred))[0][0])
        raise UserError(
            f"{row_name(row)}: the model's prediction is {float(pred[row])} (the inputs are too "
            "large for float32 arithmetic); check the row's values"
        )
    return pred


def record_values(records: list, features: tuple[str, ...], record_name: Callable[[int], str]) -> np.ndarray:
    """JSON records (objects keyed by feature, any order) -> (k, 8) float64 in feature order.

    record_name(i) names record i of this list ("line 7", "record 3"). Numbers only: true and
    false are not house data, and an integer too large for float32 is out of range. The common
    case is checked in bulk; the first bad record is found and named one by one.
    """
    feature_set = set(features)
    # In bulk, by map and set at C speed: dicts of exactly len(features) keys from which every
    # feature can be taken have exactly the feature keys; their values must be int or float.
    try:
        if records and set(map(type, records)) == {dict} and set(map(len, records)) == {len(features)}:
            rows = list(map(operator.itemgetter(*features), records))
            if set(map(type, itertools.chain.from_iterable(rows))) <= {int, float}:
                return np.array(rows, dtype=np.float64).reshape(-1, len(features))
    except (KeyError, OverflowError):  # a missing feature, an integer beyond float64: named below
        pass
    for i, rec in enumerate(records):
        check_record(rec, features, feature_set, record_name(i))
    raise AssertionError("a record failed the bulk check but passed one by one")  # a bug, not the input


def check_record(rec: object, features: tuple[str, ...], feature_set: set[str], name: str) -> None:
    """One record, with a message naming what is wrong with it."""
    if not isinstance(rec, Mapping):
        raise UserError(f"{name}: expected an object with the 8 feature names, got {type(rec).__name__}")
    if rec.keys() != feature_set:
        missing = [f for f in features if f not in rec]
        unknown = [k for k in rec if k not in feature_set]
        listed = ", ".join(shown_json(k) for k in unknown[:5])
        what = "; ".join(
            filter(None, [f"missing {', '.join(missing)}" if missing else "", f"unknown {listed}" if unknown else ""])
        )
        raise UserError(f"{name}: {what}; expected exactly {', '.join(features)}")
    for feature in features:
        value = rec[feature]
        # bool is an int subclass in Python; true/false are not house data.
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise UserError(f"{name}, field {feature!r}: {shown_json(value)} is not a number")
        if isinstance(value, int) and abs(value) > FLOAT32_MAX:
            raise out_of_float32(f"{name}, field {feature!r}", value)
