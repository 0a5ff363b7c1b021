"""MLflow's side of tests/deploy/test_mlflow.py, run in MLflow's own venv (requirements-mlflow.txt,
which make test passes as HOUSING_MLFLOW_PYTHON), so this file imports nothing of the project.
Each command prints one JSON document on stdout.

    python tests/mlflow_checks.py inspect TRACKING_URI NAME
    python tests/mlflow_checks.py predict TRACKING_URI MODEL_URI ROWS.npy COLUMNS_JSON
    python tests/mlflow_checks.py spark-udf TRACKING_URI MODEL_URI INPUT_PARQUET OUTPUT_PARQUET FEATURES_JSON

- inspect: the registered model NAME: its versions and their tags, the alias, and the aliased
  version's flavours, signature, input example, run params, metrics and artifacts, the files
  inside the model and the sha256 of its model.onnx;
- predict: mlflow.pyfunc.load_model(MODEL_URI) on the float32 rows of ROWS.npy (columns in
  FEATURES order) as a DataFrame whose columns are COLUMNS_JSON, in that order: the predictions,
  or MLflow's error;
- spark-udf: mlflow.pyfunc.spark_udf (env_manager="local") on a local[2] session: the input's
  columns plus a float ``prediction``, written to OUTPUT_PARQUET.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd


def inspect(tracking_uri: str, name: str) -> dict:
    mlflow.set_tracking_uri(tracking_uri)
    client = mlflow.MlflowClient()
    versions = client.search_model_versions(f"name = '{name}'")
    current = client.get_model_version_by_alias(name, "current")
    run = client.get_run(current.run_id)
    # The registry keeps the logged model's id in the version's source, models:/m-<id>.
    logged = client.get_logged_model(current.model_id or current.source.removeprefix("models:/"))
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(mlflow.artifacts.download_artifacts(f"models:/{name}/{current.version}", dst_path=tmp))
        model = mlflow.models.Model.load(local / "MLmodel")
        example = model.load_input_example(str(local))
        files = sorted(str(p.relative_to(local)) for p in local.rglob("*") if p.is_file())
        onnx_sha = hashlib.sha256((local / model.flavors["onnx"]["data"]).read_bytes()).hexdigest()
    signature = model.signature
    return {
        "versions": sorted({v.version: v.tags for v in versions}.items()),
        "current": current.version,
        "flavors": sorted(model.flavors),
        "loader": model.flavors["python_function"]["loader_module"],
        "session_options": model.flavors["onnx"].get("onnx_session_options"),
        "inputs": [{"name": c.name, "type": str(c.type), "required": c.required} for c in signature.inputs.inputs],
        "outputs": [{"name": c.name, "type": str(c.type)} for c in signature.outputs.inputs],
        "input_example": {"columns": list(example.columns), "dtypes": sorted({str(t) for t in example.dtypes})},
        "input_example_rows": len(example),
        "params": run.data.params,
        "metrics": run.data.metrics,
        "model_params": logged.params,
        "model_metrics": {m.key: m.value for m in logged.metrics or []},
        "run_artifacts": sorted(a.path for a in client.list_artifacts(run.info.run_id)),
        "model_files": files,
        "model_onnx_sha256": onnx_sha,
        "tags": current.tags,
    }


def predict(tracking_uri: str, model_uri: str, rows: str, columns: str) -> dict:
    mlflow.set_tracking_uri(tracking_uri)
    model = mlflow.pyfunc.load_model(model_uri)
    names = [c.name for c in model.metadata.get_input_schema().inputs]
    X = np.load(rows).astype(np.float32)
    frame = pd.DataFrame(X, columns=names)[json.loads(columns)]
    try:
        out = model.predict(frame)
    except mlflow.exceptions.MlflowException as err:
        return {"error": type(err).__name__, "message": err.message}
    return {"columns": list(out.columns), "predictions": out.iloc[:, 0].to_numpy(np.float32).tolist()}


def spark_udf(tracking_uri: str, model_uri: str, source: str, dest: str, features: str) -> dict:
    """As a user would: the features cast to float32 and passed by name, in a struct."""
    mlflow.set_tracking_uri(tracking_uri)
    os.environ["PYSPARK_PYTHON"] = sys.executable  # the workers need mlflow too
    from pyspark.sql import SparkSession
    from pyspark.sql import functions as F

    spark = (
        SparkSession.builder.master("local[2]")
        .config("spark.ui.enabled", "false")
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .getOrCreate()
    )
    try:
        udf = mlflow.pyfunc.spark_udf(spark, model_uri, result_type="float", env_manager="local")
        frame = spark.read.parquet(source)
        args = F.struct(*[F.col(f).cast("float").alias(f) for f in json.loads(features)])
        frame.withColumn("prediction", udf(args)).write.parquet(dest)
    finally:
        spark.stop()
    return {"output": dest}


COMMANDS = {"inspect": inspect, "predict": predict, "spark-udf": spark_udf}

if __name__ == "__main__":
    print(json.dumps(COMMANDS[sys.argv[1]](*sys.argv[2:])))
