"""What users would write instead of the runtime CLI, for `make bench` to compare against:

    python -m benchmarks.alternatives pandas  MODEL INPUT.csv OUTPUT.csv
    python -m benchmarks.alternatives pyarrow MODEL INPUT.csv OUTPUT.csv
    python -m benchmarks.alternatives parquet MODEL INPUT_FOLDER OUTPUT.parquet

- pandas: read_csv, onnxruntime, to_csv, the whole file at once;
- pyarrow: open_csv streaming record batches, onnxruntime per batch, CSVWriter;
- parquet: the single-process alternative to the Spark job (`make bench-spark`): a pyarrow
  dataset's record batches, onnxruntime per batch, every column plus the prediction to Parquet.

Each uses a default onnxruntime session, as a user's script would. Benchmark only: pandas and
pyarrow come from requirements-bench.txt or requirements-spark.txt, never the runtime image; no
stage imports this.
"""

from __future__ import annotations

import sys

import numpy as np
import onnxruntime as ort

FEATURES = ("MedInc", "HouseAge", "AveRooms", "AveBedrms", "Population", "AveOccup", "Latitude", "Longitude")


def session(model: str) -> ort.InferenceSession:
    return ort.InferenceSession(model, providers=["CPUExecutionProvider"])


def pandas_script(model: str, src: str, dst: str) -> None:
    import pandas as pd

    sess = session(model)
    X = pd.read_csv(src)[list(FEATURES)].to_numpy(dtype=np.float32)
    pred = sess.run(None, {sess.get_inputs()[0].name: X})[0].reshape(-1)
    pd.DataFrame({"prediction": pred}).to_csv(dst, index=False)


def pyarrow_script(model: str, src: str, dst: str) -> None:
    import pyarrow as pa
    import pyarrow.csv as pacsv

    sess = session(model)
    name = sess.get_inputs()[0].name
    schema = pa.schema([("prediction", pa.float32())])
    with pacsv.open_csv(src) as reader, pacsv.CSVWriter(dst, schema) as writer:
        for batch in reader:
            X = np.column_stack([batch.column(f).to_numpy() for f in FEATURES]).astype(np.float32)
            pred = sess.run(None, {name: X})[0].reshape(-1)
            writer.write_table(pa.table({"prediction": pred}, schema=schema))


def parquet_script(model: str, src: str, dst: str) -> None:
    import pyarrow as pa
    import pyarrow.dataset as ds
    import pyarrow.parquet as pq

    sess = session(model)
    name = sess.get_inputs()[0].name
    dataset = ds.dataset(src, format="parquet")
    schema = dataset.schema.append(pa.field("prediction", pa.float32()))
    with pq.ParquetWriter(dst, schema) as writer:
        for batch in dataset.to_batches(batch_size=65_536):
            X = np.column_stack([batch.column(f).to_numpy() for f in FEATURES]).astype(np.float32)
            pred = sess.run(None, {name: X})[0].reshape(-1)
            writer.write_batch(pa.RecordBatch.from_arrays([*batch.columns, pa.array(pred)], schema=schema))


SCRIPTS = {"pandas": pandas_script, "pyarrow": pyarrow_script, "parquet": parquet_script}

if __name__ == "__main__":
    which, *paths = sys.argv[1:]
    SCRIPTS[which](*paths)
