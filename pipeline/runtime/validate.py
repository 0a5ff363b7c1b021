"""What makes input acceptable: the one validation core that every front end uses, so that
the same bad value gets the same words everywhere."""
from __future__ import annotations

import json
import math
from collections.abc import Callable

import numpy as np

from pipeline.errors import UserError


def first_non_finite(chunk: np.ndarray) -> tuple[int, int] | None:
    """(row, column) of the first NaN or infinity in a chunk, or None (one vectorized test)."""
    if np.isfinite(chunk).all():
        return None
    row, col = np.argwhere(~np.isfinite(chunk))[0]
    return int(row), int(col)


def records_to_array(records: list, features: tuple[str, ...], where: Callable[[int], str]) -> np.ndarray:
    """JSON records (objects keyed by feature) -> (k, 8) float64, checking every record.

    where(i) names record i of this list for an error message ("line 7", "record 3").
    """
    feature_set = set(features)
    rows = []
    for i, rec in enumerate(records):
        if not isinstance(rec, dict):
            raise UserError(f"{where(i)}: expected an object with the 8 feature names, got {type(rec).__name__}")
        if rec.keys() != feature_set:
            missing = [f for f in features if f not in rec]
            unknown = [k for k in rec if k not in feature_set]
            what = "; ".join(filter(None, [f"missing {', '.join(missing)}" if missing else "",
                                           f"unknown {', '.join(map(str, unknown))}" if unknown else ""]))
            raise UserError(f"{where(i)}: {what}; expected exactly {', '.join(features)}")
        row = []
        for name in features:
            value = rec[name]
            # bool is an int subclass in Python; true/false are not house data.
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise UserError(f"{where(i)}, field {name!r}: {json.dumps(value)[:40]} is not a number")
            if not math.isfinite(value):
                raise UserError(f"{where(i)}, field {name!r}: {value} is not a finite number "
                                "(NaN and infinity cannot be predicted)")
            row.append(value)
        rows.append(row)
    return np.array(rows, dtype=np.float64).reshape(-1, len(features))
