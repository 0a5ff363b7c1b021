"""`make mlflow`: the three models registered in an embedded SQLite registry (in a copy of the
built artifacts, never the user's), each version carrying the onnx flavour, a column signature,
an input example, params, metrics, the reports and its sha256; pyfunc on shuffled columns predicts
exactly what the CLI predicts, a missing column is refused with MLflow's own error; re-running
registers nothing new, a changed file gets a new version; an unreachable tracking server or a
tampered model is one line. The Spark test: spark_udf on the registered uint8 model scores the
Spark job's input exactly as the job does.

MLflow runs in its own venv (requirements-mlflow.txt; make test passes its python as
HOUSING_MLFLOW_PYTHON): tests/mlflow_checks.py is its side, and prints JSON. Without that venv
these tests fail, they never skip.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import pytest

from helpers import REPO, california_like_rows, make, run_module, write_csv
from pipeline import config
from pipeline.deploy import mlflow_registry as registry

pytestmark = pytest.mark.integration

CHECKS = REPO / "tests" / "mlflow_checks.py"
PROG = "pipeline.deploy.mlflow_registry"
FEATURES = list(config.FEATURE_NAMES)
# A user's own MLflow settings must not leak into the tests.
MLFLOW_ENV = (
    "MLFLOW_TRACKING_URI",
    "MLFLOW_REGISTRY_URI",
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES",
    "MLFLOW_HTTP_REQUEST_TIMEOUT",
)


def mlflow_python() -> str:
    """MLflow's venv (make test sets HOUSING_MLFLOW_PYTHON)."""
    python = REPO / os.environ.get("HOUSING_MLFLOW_PYTHON", ".venv-mlflow/bin/python")  # relative: to the repo
    assert python.exists(), f"{python} is missing: run the tests through make test (it makes that venv)"
    return str(python)


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in MLFLOW_ENV}
    return {**env, **extra}


def checks(*args: str, cwd: Path = REPO) -> dict:
    """tests/mlflow_checks.py in MLflow's venv: its JSON document (the last line of its stdout)."""
    out = subprocess.run(
        [mlflow_python(), str(CHECKS), *args], cwd=cwd, env=clean_env(), capture_output=True, text=True, timeout=600
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def register(art: Path, cwd: Path = REPO, **env: str) -> subprocess.CompletedProcess:
    """The module as make mlflow runs it, in MLflow's venv."""
    return subprocess.run(
        [mlflow_python(), "-m", PROG, "--artifacts", str(art)],
        cwd=cwd,
        env=clean_env(PYTHONPATH=f"{REPO}:{REPO / 'runtime' / 'src'}", **env),
        capture_output=True,
        text=True,
        timeout=300,
    )


def make_mlflow(art: Path) -> subprocess.CompletedProcess:
    venv = Path(mlflow_python()).parent.parent
    return make("mlflow", f"MLFLOW_VENV={venv}", artifacts=art, env={k: "" for k in MLFLOW_ENV})


def one_error_line(out: subprocess.CompletedProcess) -> str:
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 2 and len(lines) == 1, out.stderr
    assert lines[0].startswith(f"{PROG}: error: "), lines
    return lines[0]


def sqlite_uri(art: Path) -> str:
    return f"sqlite:///{art / 'mlflow' / 'mlflow.db'}"


@dataclass(frozen=True)
class Store:
    artifacts: Path
    uri: str
    first_run: str


@pytest.fixture(scope="module")
def store(built, tmp_path_factory) -> Store:
    """`make mlflow` on a copy of the built artifacts: the default store, under its mlflow/ folder."""
    art = tmp_path_factory.mktemp("mlflow") / "artifacts"
    shutil.copytree(built, art)
    result = make_mlflow(art)
    assert result.returncode == 0, result.stdout + result.stderr
    return Store(art, sqlite_uri(art), result.stdout)


def reports(art: Path) -> tuple[dict, dict, dict]:
    read = lambda key: json.loads((art / config.ARTIFACT_NAMES[key]).read_text())  # noqa: E731
    return read("quant_report"), read("train_metrics"), read("manifest")


# ---- What each version carries --------------------------------------------------------------
@pytest.mark.parametrize("variant", config.MODEL_VARIANTS)
def test_each_version_carries_flavour_signature_example_params_metrics_reports_and_sha256(store, variant):
    name = registry.registered_name(variant)
    assert f"{name}: version 1 (registered;" in store.first_run
    info = checks("inspect", store.uri, name)
    quant, train, manifest = reports(store.artifacts)
    sha = manifest["artifacts"][config.ONNX_NAMES[variant]]["sha256"]
    assert info["versions"] == [[1, {"sha256": sha}]] and info["current"] == 1
    assert info["tags"]["sha256"] == info["model_onnx_sha256"] == sha  # MLflow stored the checked bytes
    assert info["flavors"] == ["onnx", "python_function"] and info["loader"] == "mlflow.onnx"
    assert info["session_options"]["intra_op_num_threads"] == 1
    assert info["inputs"] == [{"name": f, "type": "DataType.float", "required": True} for f in FEATURES]
    assert [o["type"] for o in info["outputs"]] == ["DataType.float"]
    assert info["input_example"] == {"columns": FEATURES, "dtypes": ["float32"]}
    assert info["input_example_rows"] == config.SAMPLE_ROWS
    if variant == "float":
        params = {"bits": "32", "scale": "none", "zero_point": "none"}
        metrics = {"test_r2": train["test"]["r2"], "train_mse_increase": 0.0}
    else:
        params = {"bits": str(quant["bits"]), "scale": repr(quant["scale"]), "zero_point": str(quant["zero_point"])}
        metrics = {
            "test_r2": quant["metrics"]["test"]["r2"],
            "train_mse_increase": quant["metrics"]["train_mse_increase_relative"],
        }
    assert info["params"] == info["model_params"] == {"variant": variant, **params}
    assert info["metrics"] == info["model_metrics"] == pytest.approx(metrics, rel=1e-15)
    assert {"manifest.json", "quant_params.json"} <= set(info["run_artifacts"])
    assert {"extra_files/manifest.json", "extra_files/quant_params.json", "input_example.json"} <= set(
        info["model_files"]
    )


# ---- Predictions ----------------------------------------------------------------------------
def cli_predictions(art: Path, variant: str, X: np.ndarray, csv: Path) -> np.ndarray:
    """`housing-runtime predict` (the runtime in .venv) on the same float32 rows, as CSV."""
    write_csv(csv, FEATURES, [[repr(float(v)) for v in row] for row in X])
    out = run_module("housing_runtime", "predict", "--artifacts", str(art), "--model", variant, "--input", str(csv))
    assert out.returncode == 0, out.stderr.decode()
    return np.array(out.stdout.decode().split()[1:], dtype=np.float32)


@pytest.mark.parametrize("variant", config.MODEL_VARIANTS)
def test_pyfunc_on_shuffled_columns_predicts_exactly_what_the_cli_predicts(store, variant, tmp_path):
    X = california_like_rows(2_000, seed=11)
    np.save(tmp_path / "rows.npy", X)
    shuffled = list(np.random.default_rng(3).permutation(FEATURES))
    assert shuffled != FEATURES
    expected = cli_predictions(store.artifacts, variant, X, tmp_path / "rows.csv")
    name = registry.registered_name(variant)
    for uri in (f"models:/{name}@{registry.ALIAS}", f"models:/{name}/1"):
        got = checks("predict", store.uri, uri, str(tmp_path / "rows.npy"), json.dumps(shuffled))
        assert "error" not in got, got
        np.testing.assert_array_equal(np.array(got["predictions"], np.float32), expected, err_msg=uri)


def test_a_dataframe_missing_a_column_is_refused_by_the_signature_with_mlflow_s_error(store, tmp_path):
    np.save(tmp_path / "rows.npy", california_like_rows(10))
    columns = [f for f in FEATURES if f != "Latitude"]
    got = checks(
        "predict",
        store.uri,
        "models:/california-housing-uint8@current",
        str(tmp_path / "rows.npy"),
        json.dumps(columns),
    )
    assert got["error"] == "MlflowException"
    assert "Failed to enforce schema of data" in got["message"]
    assert "Model is missing inputs ['Latitude']" in got["message"]


# ---- Idempotence, new versions ------------------------------------------------------------------
def test_rerunning_registers_no_new_version(store):
    again = make_mlflow(store.artifacts)
    assert again.returncode == 0, again.stderr
    for variant in config.MODEL_VARIANTS:
        name = registry.registered_name(variant)
        assert f"{name}: version 1 (unchanged, already registered;" in again.stdout
        assert [v for v, _ in checks("inspect", store.uri, name)["versions"]] == [1]


def test_a_changed_model_gets_a_new_version_and_the_alias_follows_it(built_copy, tmp_path):
    """MLFLOW_TRACKING_URI names the store; a new uint8 file (other metadata, same weights) and its
    manifest register version 2 of uint8 only, and `current` moves to it."""
    (tmp_path / "store").mkdir()
    uri = f"sqlite:///{tmp_path / 'store' / 'store.db'}"
    first = register(built_copy, cwd=tmp_path, MLFLOW_TRACKING_URI=uri)
    assert first.returncode == 0, first.stderr
    assert not (built_copy / "mlflow").exists()  # the default store is not used
    assert (tmp_path / "store" / "artifacts").is_dir() and not (tmp_path / "mlruns").exists()  # by the database
    path = built_copy / config.ONNX_NAMES["uint8"]
    model = onnx.load(path)
    onnx.helper.set_model_props(model, {p.key: p.value for p in model.metadata_props} | {"note": "rebuilt"})
    onnx.save(model, path)
    listed = json.loads((built_copy / config.MANIFEST_NAME).read_text())["artifacts"]
    out = run_module(
        "pipeline.stages.manifest",
        "--output",
        str(built_copy / config.MANIFEST_NAME),
        *(str(built_copy / n) for n in listed),
    )
    assert out.returncode == 0, out.stderr.decode()
    second = register(built_copy, cwd=tmp_path, MLFLOW_TRACKING_URI=uri)
    assert second.returncode == 0, second.stderr
    assert "california-housing-uint8: version 2 (registered;" in second.stdout
    assert "california-housing-float: version 1 (unchanged" in second.stdout
    info = checks("inspect", uri, "california-housing-uint8", cwd=tmp_path)
    assert info["current"] == 2 and [v for v, _ in info["versions"]] == [1, 2]
    assert (
        info["tags"]["sha256"]
        == json.loads((built_copy / config.MANIFEST_NAME).read_text())["artifacts"][path.name]["sha256"]
    )


# ---- Refusals ---------------------------------------------------------------------------------
def closed_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_an_unreachable_tracking_uri_is_one_line_within_seconds(store):
    uri = f"http://127.0.0.1:{closed_port()}"
    start = time.monotonic()
    out = register(store.artifacts, MLFLOW_TRACKING_URI=uri)
    elapsed = time.monotonic() - start
    line = one_error_line(out)
    assert line.startswith(f"{PROG}: error: cannot reach the MLflow store '{uri}' (Connection refused)"), line
    assert "unset MLFLOW_TRACKING_URI" in line
    assert elapsed < 30, f"{elapsed:.0f} s: MLflow retried"


def test_a_model_that_does_not_match_the_manifest_is_refused_before_the_store_is_touched(built_copy):
    with open(built_copy / config.ONNX_NAMES["dequant"], "ab") as fh:
        fh.write(b"\0")
    line = one_error_line(register(built_copy))
    assert "model_dequant.onnx" in line and "does not match its sha256" in line
    assert not (built_copy / "mlflow").exists()


# ---- Spark --------------------------------------------------------------------------------------
@pytest.mark.spark
def test_spark_udf_on_the_registered_uint8_model_scores_the_spark_job_s_input_as_the_job_does(store, spark, tmp_path):
    """The job's input as users give it: float64 columns in another order, an id column. The UDF
    gets the features by name (a struct, cast to float32, in yet another order)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from housing_runtime.spark import job

    X = np.abs(california_like_rows(60_000, seed=21).astype(np.float64))
    src = tmp_path / "homes"
    src.mkdir()
    for k, ids in enumerate(np.array_split(np.arange(len(X)), 3)):
        columns = {"id": pa.array(ids)} | {f: pa.array(X[ids, FEATURES.index(f)]) for f in reversed(FEATURES)}
        pq.write_table(pa.table(columns), src / f"part-{k}.parquet")
    scorer = job.load_scorer(store.artifacts, "uint8", "prediction")
    job.score(spark, scorer, str(src), str(tmp_path / "job"))
    order = list(np.random.default_rng(5).permutation(FEATURES))
    checks(
        "spark-udf",
        store.uri,
        "models:/california-housing-uint8@current",
        str(src),
        str(tmp_path / "udf"),
        json.dumps(order),
    )
    by_job = pq.read_table(tmp_path / "job").sort_by("id")
    by_udf = pq.read_table(tmp_path / "udf").sort_by("id")
    assert by_udf["id"].to_pylist() == list(range(len(X)))
    assert by_udf.schema.field("prediction").type == pa.float32()
    np.testing.assert_array_equal(by_udf["prediction"].to_numpy(), by_job["prediction"].to_numpy())
