"""MLflow's ``spark_udf`` on a registered model: `make bench-spark`'s peer of the Spark job, run in
MLflow's own venv (requirements-mlflow.txt), never in .venv.

    PYTHONPATH=.:runtime/src .venv-mlflow/bin/python -m benchmarks.spark_udf score --tracking-uri URI \\
        --model-uri models:/california-housing-uint8@current --input rows/ --output preds/
    PYTHONPATH=.:runtime/src .venv-mlflow/bin/python -m benchmarks.spark_udf breakdown --tracking-uri URI \\
        --model-uri models:/california-housing-uint8@current --input rows/ --scratch DIR   # prints JSON

``score`` is what a user writes: a session with the job's own local settings, the model as a UDF
(``env_manager="local"``), the 8 features cast to float32 and passed by name in a struct (the
signature maps them), every input column plus a float ``prediction`` written as Parquet.

``breakdown`` says where its time goes, as benchmarks.spark does for the job: in one warm session,
Spark reading and writing the Parquet with no Python, then with a pandas UDF that only returns
zeros (Arrow to pandas and back: the hop spark_udf takes), then spark_udf itself, at Spark's default
batch of 10,000 rows and at the job's 65,536; and in this process, on the first 1,000,000 rows in
batches of 10,000, pyfunc's predict whole, its schema enforcement alone and onnxruntime alone.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from housing_runtime.config import FEATURE_NAMES
from housing_runtime.errors import run_cli

# Spark's own default (spark.sql.execution.arrow.maxRecordsPerBatch), which spark_udf's pandas
# batches follow; and the job's (housing_runtime.spark.environment.ARROW_BATCH_ROWS).
SPARK_DEFAULT_BATCH = 10_000
PROFILE_ROWS = 1_000_000


def import_mlflow(tracking_uri: str) -> Any:
    """mlflow, imported here so that the module type-checks in .venv, which lacks it."""
    mlflow = importlib.import_module("mlflow")
    importlib.import_module("mlflow.pyfunc")
    mlflow.set_tracking_uri(tracking_uri)
    return mlflow


def session(master: str = "local[2]") -> Any:
    """A session with the job's local settings; its Python workers are this venv's (they load MLflow)."""
    os.environ["PYSPARK_PYTHON"] = sys.executable
    from housing_runtime.spark import environment

    return environment.local_session(master)


def features_struct() -> Any:
    from pyspark.sql import functions as F

    return F.struct(*[F.col(f).cast("float").alias(f) for f in FEATURE_NAMES])


def score(tracking_uri: str, model_uri: str, source: str, dest: str) -> None:
    mlflow = import_mlflow(tracking_uri)
    spark = session()
    try:
        udf = mlflow.pyfunc.spark_udf(spark, model_uri, result_type="float", env_manager="local")
        spark.read.parquet(source).withColumn("prediction", udf(features_struct())).write.parquet(dest)
    finally:
        spark.stop()


def zeros(batches: Iterator[pd.DataFrame]) -> Iterator[pd.Series]:
    """A pandas UDF body that does no work: the Arrow-to-pandas round trip's own cost. (Spark reads
    the UDF's kind from these type hints: a struct's batches in, a column's out, as spark_udf's.)"""
    for frame in batches:
        yield pd.Series(np.zeros(len(frame), np.float32))


def warm_session(mlflow: Any, model_uri: str, source: str, scratch: Path, repeats: int) -> dict[str, float]:
    """Wall seconds of writes of the same rows in one local[2] session, best of ``repeats``."""
    # pyspark's stubs type only the deprecated functionType form of pandas_udf, not the type-hint
    # form (the one spark_udf itself uses), so it is taken untyped.
    pandas_udf: Any = importlib.import_module("pyspark.sql.pandas.functions").pandas_udf
    spark = session()
    try:
        frame = spark.read.parquet(source)
        udf = mlflow.pyfunc.spark_udf(spark, model_uri, result_type="float", env_manager="local")
        zero_udf = pandas_udf(zeros, "float")

        def with_batch(rows: int, write: Callable[[str], None]) -> Callable[[str], None]:
            def run(out: str) -> None:
                spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", str(rows))
                write(out)

            return run

        steps = {
            "Spark reads and writes the Parquet, no Python": with_batch(
                SPARK_DEFAULT_BATCH, lambda out: frame.write.parquet(out)
            ),
            "+ a pandas UDF that only returns zeros (Arrow to pandas and back)": with_batch(
                SPARK_DEFAULT_BATCH,
                lambda out: frame.withColumn("prediction", zero_udf(features_struct())).write.parquet(out),
            ),
            "+ spark_udf's scoring (schema enforcement, onnxruntime), batches of 10,000": with_batch(
                SPARK_DEFAULT_BATCH,
                lambda out: frame.withColumn("prediction", udf(features_struct())).write.parquet(out),
            ),
            "spark_udf with the job's batches of 65,536 rows": with_batch(
                65_536, lambda out: frame.withColumn("prediction", udf(features_struct())).write.parquet(out)
            ),
        }
        times: dict[str, list[float]] = {step: [] for step in steps}
        for _ in range(repeats):
            for step, write in steps.items():
                out = scratch / "out"
                shutil.rmtree(out, ignore_errors=True)
                start = time.perf_counter()
                write(str(out))
                times[step].append(time.perf_counter() - start)
        shutil.rmtree(scratch / "out", ignore_errors=True)
    finally:
        spark.stop()
    return {step: min(t) for step, t in times.items()}


def python_side(mlflow: Any, model_uri: str, source: str, repeats: int) -> dict[str, float]:
    """One core's seconds per 1,000,000 rows of spark_udf's Python side, in batches of 10,000 as
    its pandas UDF gets them: pyfunc's predict whole, its schema enforcement, onnxruntime."""
    import pyarrow.dataset as ds

    enforce = importlib.import_module("mlflow.models.utils")._enforce_schema  # what pyfunc's predict calls
    model = mlflow.pyfunc.load_model(model_uri)
    schema = model.metadata.get_input_schema()
    session = model.get_raw_model()  # the onnxruntime InferenceSession
    input_name = session.get_inputs()[0].name
    table = ds.dataset(source).head(PROFILE_ROWS, columns=list(FEATURE_NAMES))
    frame = table.to_pandas().astype(np.float32)
    batches = [frame.iloc[k : k + SPARK_DEFAULT_BATCH] for k in range(0, len(frame), SPARK_DEFAULT_BATCH)]
    parts: dict[str, Callable[[Any], object]] = {
        "pyfunc predict, whole": model.predict,
        "its schema enforcement (mlflow.models.utils._enforce_schema)": lambda b: enforce(b, schema),
        "onnxruntime's run on the same batch": lambda b: session.run(None, {input_name: b.to_numpy(np.float32)}),
    }
    best: dict[str, float] = {}
    for name, call in parts.items():
        runs = []
        for _ in range(repeats):
            start = time.process_time()
            for batch in batches:
                call(batch)
            runs.append(time.process_time() - start)
        best[name] = min(runs) * 1_000_000 / len(frame)
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="benchmarks.spark_udf", description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=("score", "breakdown"))
    parser.add_argument("--tracking-uri", required=True)
    parser.add_argument("--model-uri", required=True)
    parser.add_argument("--input", required=True, help="the Parquet folder to score")
    parser.add_argument("--output", help="score: the new Parquet folder")
    parser.add_argument("--scratch", type=Path, help="breakdown: a folder for its writes")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    if args.command == "score":
        score(args.tracking_uri, args.model_uri, args.input, args.output)
        return 0
    mlflow = import_mlflow(args.tracking_uri)
    result = {
        "warm_session": warm_session(mlflow, args.model_uri, args.input, args.scratch, args.repeats),
        "python_side_per_million": python_side(mlflow, args.model_uri, args.input, args.repeats),
        "mlflow": mlflow.__version__,
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    run_cli(main, "benchmarks.spark_udf")
