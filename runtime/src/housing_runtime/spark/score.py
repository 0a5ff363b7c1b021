"""What each Spark task runs: Arrow record batches in, the same batches plus a prediction out.

The task gets the model as bytes inside the function's closure (Spark Connect has neither
SparkFiles nor broadcast), re-hashes them, builds one onnxruntime session, and validates every
batch with the runtime's own core (``housing_runtime.validate``): a NaN, an infinity or a value
beyond float32 fails the task with a ``UserError`` naming the row, the column and the value.
numpy, pyarrow and onnxruntime only: no pandas on this path.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from housing_runtime.errors import UserError, shown
from housing_runtime.integrity import sha256_bytes
from housing_runtime.model import Predictor
from housing_runtime.validate import check_predictions, to_float32


def is_feature_type(arrow_type: pa.DataType) -> bool:
    """Types a feature column may have: any number, or text (CSV columns are read as text)."""
    return (
        pa.types.is_integer(arrow_type)
        or pa.types.is_floating(arrow_type)
        or pa.types.is_decimal(arrow_type)
        or pa.types.is_string(arrow_type)
        or pa.types.is_large_string(arrow_type)
    )


def row_name(batch: pa.RecordBatch, row: int) -> str:
    """The row as the user wrote it (every column, capped), since a row number inside one task's
    batch would mean nothing to them."""
    return f"row {shown(batch.slice(row, 1).to_pylist()[0])}"


def first_unparsable(column: pa.Array) -> int:
    """The index of the first text value that is not a number, by bisection: Arrow's cast says
    that a batch holds one, not where."""
    lo, hi = 0, len(column)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        try:
            pc.cast(column.slice(lo, mid - lo), pa.float64())
            lo = mid
        except pa.ArrowInvalid:
            hi = mid
    return lo


def column_values(batch: pa.RecordBatch, name: str) -> np.ndarray:
    """One feature column as float64, refusing a missing value or text that is not a number."""
    column = batch.column(name)
    if column.null_count:
        row = int(pc.index(pc.is_null(column), True).as_py())
        raise UserError(
            f"{row_name(batch, row)}, column {name!r}: the value is missing (null, or the row's file "
            "has no such column); every feature needs a number"
        )
    if not is_feature_type(column.type):
        raise UserError(f"column {name!r} holds {column.type}; features must be numbers")
    if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
        try:
            return pc.cast(column, pa.float64()).to_numpy(zero_copy_only=False)
        except pa.ArrowInvalid:
            row = first_unparsable(column)
            raise UserError(
                f"{row_name(batch, row)}, column {name!r}: {shown(column[row].as_py())} is not a number"
            ) from None
    # Integers beyond 2**53 and decimals round to the nearest float64, as the CLI's parser does.
    return pc.cast(column, pa.float64(), safe=False).to_numpy(zero_copy_only=False)


def feature_matrix(batch: pa.RecordBatch, features: tuple[str, ...]) -> np.ndarray:
    """(k, 8) float32 in model feature order, through the runtime's validation core."""
    values = np.column_stack([column_values(batch, name) for name in features])
    return to_float32(values, lambda row, col: f"{row_name(batch, row)}, column {features[col]!r}")


@dataclass(frozen=True)
class Scorer:
    """The function handed to mapInArrow: picklable, carrying the model's bytes and hash."""

    model_bytes: bytes
    sha256: str
    model_name: str  # the file's name, for messages
    features: tuple[str, ...]  # input columns in the model's feature order
    prediction: str  # the output column's name

    def __call__(self, batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        predictor = self.predictor()  # one session per task, built before the first batch
        for batch in batches:
            yield self.score(predictor, batch)

    def predictor(self) -> Predictor:
        # The bytes crossed the network in the closure: check them as the driver did.
        if sha256_bytes(self.model_bytes) != self.sha256:
            raise UserError(
                f"the model {self.model_name!r} reached this task with a different sha256 than the "
                "driver checked; the job's closure was corrupted in transit"
            )
        return Predictor(Path(self.model_name), self.model_bytes)

    def score(self, predictor: Predictor, batch: pa.RecordBatch) -> pa.RecordBatch:
        """The batch's own columns, unchanged, and the prediction as float32."""
        if batch.num_rows:
            X = feature_matrix(batch, self.features)
            pred = check_predictions(predictor.predict(X), lambda row: row_name(batch, row))
        else:
            pred = np.empty(0, dtype=np.float32)
        return pa.RecordBatch.from_arrays(
            [*batch.columns, pa.array(pred, pa.float32())], names=[*batch.schema.names, self.prediction]
        )
