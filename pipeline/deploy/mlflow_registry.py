"""Register the three ONNX models in an MLflow model registry, each checked against the manifest.

    make mlflow                                                  # the embedded store, under artifacts/mlflow/
    MLFLOW_TRACKING_URI=http://127.0.0.1:5000 make mlflow        # a tracking server instead
    PYTHONPATH=.:runtime/src .venv-mlflow/bin/python -m pipeline.deploy.mlflow_registry --artifacts artifacts

Runs in its own venv (requirements-mlflow.txt), never in .venv or the image. The registered models
are ``california-housing-float``, ``california-housing-dequant`` and ``california-housing-uint8``.
Each version carries the ``mlflow.onnx`` flavour (the model's bytes as checked, one single-threaded
CPU session, as the runtime runs it); a column signature naming the 8 features as float32, so that
pyfunc reorders a DataFrame's columns by name and refuses one that lacks a feature; the bundled
sample as its input example; params (variant, bits, scale, zero point); metrics (test R², the
relative training-MSE increase over the float model); manifest.json and the quantization report
(quant_params.json) as artifacts, in its run and inside the model; and a ``sha256`` tag, the
model file's. The alias ``current`` points at the version of the files on disk: load it with
``mlflow.pyfunc.load_model("models:/california-housing-uint8@current")``.

Idempotent: a version whose ``sha256`` tag is the file's is reused, not registered again.
The store is ``sqlite:///<artifacts>/mlflow/mlflow.db`` with its artifacts under
``<artifacts>/mlflow/artifacts``, unless MLFLOW_TRACKING_URI (and MLFLOW_REGISTRY_URI) name
another (a SQLite one keeps its artifacts beside its database too). A store that cannot be
reached is one line within seconds: MLflow's HTTP retries are off and its timeout short, unless
the environment sets them.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from housing_runtime.errors import OneLineArgumentParser, UserError, run_cli, shown
from housing_runtime.integrity import check_file, read_checked, sha256_bytes
from pipeline.config import ARTIFACT_NAMES, FEATURE_NAMES, MANIFEST_NAME, MODEL_VARIANTS, ONNX_NAMES

PROG = "pipeline.deploy.mlflow_registry"
NAME_PREFIX = "california-housing-"
EXPERIMENT = "california-housing"
ALIAS = "current"
SHA_TAG = "sha256"
# The embedded store: <artifacts>/mlflow/mlflow.db and <artifacts>/mlflow/artifacts/.
STORE_FOLDER = ARTIFACT_NAMES["mlflow_store"]
# Fail fast on a store that is down: MLflow's defaults retry for minutes (7 retries, backoff
# factor 2, a 120 s timeout per request). A user's own settings win.
HTTP_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}
# The runtime's session: one thread, CPU (housing_runtime.model.Predictor), so that pyfunc and
# spark_udf predict what the CLI and the Spark job predict, and a Spark task uses one core.
SESSION_OPTIONS = {"intra_op_num_threads": 1, "inter_op_num_threads": 1, "execution_mode": "sequential"}
PROVIDERS = ["CPUExecutionProvider"]
# What each version's model needs to run; pyfunc adds mlflow itself.
MODEL_REQUIREMENTS = ("onnx", "onnxruntime", "numpy", "pandas")


def registered_name(variant: str) -> str:
    """The registered model's name for a variant: california-housing-uint8."""
    return NAME_PREFIX + variant


@dataclass(frozen=True)
class Candidate:
    """One model to register: its verified bytes and what its version carries."""

    variant: str
    path: Path
    data: bytes
    sha256: str
    params: dict[str, str]
    metrics: dict[str, float]

    @property
    def name(self) -> str:
        return registered_name(self.variant)


def read_report(manifest: Path, path: Path) -> dict[str, Any]:
    """A JSON report of the pipeline's, refused unless it matches the manifest."""
    check_file(manifest, path)
    return json.loads(path.read_text(encoding="utf-8"))


def candidates(artifacts: Path) -> list[Candidate]:
    """The three models and their params and metrics, every file checked against the manifest."""
    manifest = artifacts / MANIFEST_NAME
    quant = read_report(manifest, artifacts / ARTIFACT_NAMES["quant_report"])
    train = read_report(manifest, artifacts / ARTIFACT_NAMES["train_metrics"])
    quantized_params = {
        "bits": str(quant["bits"]),
        "scale": repr(quant["scale"]),
        "zero_point": str(quant["zero_point"]),
    }
    quantized_metrics = {
        "test_r2": float(quant["metrics"]["test"]["r2"]),
        "train_mse_increase": float(quant["metrics"]["train_mse_increase_relative"]),
    }
    out = []
    for variant in MODEL_VARIANTS:
        path = artifacts / ONNX_NAMES[variant]
        data = read_checked(manifest, path)
        if variant == "float":  # no quantization: the float model is the reference
            params = {"bits": "32", "scale": "none", "zero_point": "none"}
            metrics = {"test_r2": float(train["test"]["r2"]), "train_mse_increase": 0.0}
        else:
            params, metrics = quantized_params, quantized_metrics
        out.append(Candidate(variant, path, data, sha256_bytes(data), {"variant": variant, **params}, metrics))
    return out


def store_uris(artifacts: Path) -> tuple[str, str, str | None]:
    """(tracking URI, registry URI, artifact location for a new experiment or None for the store's).

    A SQLite store keeps the artifacts beside its database, in ``artifacts/`` (MLflow's own
    default would be ./mlruns in whatever folder make runs from); a server keeps its own."""
    tracking = os.environ.get("MLFLOW_TRACKING_URI", "").strip()
    if not tracking:
        folder = (artifacts / STORE_FOLDER).resolve()
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise UserError(f"cannot make the MLflow store's folder {shown(str(folder))} ({err.strerror})") from None
        tracking = f"sqlite:///{folder / 'mlflow.db'}"
    registry = os.environ.get("MLFLOW_REGISTRY_URI", "").strip() or tracking
    database = tracking.removeprefix("sqlite:///").split("?")[0] if tracking.startswith("sqlite:///") else ""
    if not database or database == ":memory:":
        return tracking, registry, None
    return tracking, registry, (Path(database).resolve().parent / "artifacts").as_uri()


def why(err: BaseException) -> str:
    """MLflow's reason, short: the OS's words for a refused or failed connection, else its first line."""
    text = str(err)
    errno = re.search(r"\[Errno -?\d+\] ([^\"'()]+)", text)
    if errno:
        return errno.group(1).strip()
    if "timed out" in text.lower():
        return "timed out"
    return shown(text.strip().splitlines()[0] if text.strip() else type(err).__name__)


def load_mlflow() -> Any:
    """mlflow, imported here so that the rest of the module is typed without it (.venv lacks it)."""
    for name, value in HTTP_DEFAULTS.items():
        os.environ.setdefault(name, value)
    try:
        mlflow = importlib.import_module("mlflow")
        importlib.import_module("mlflow.onnx")
    except ImportError as err:
        raise UserError(
            f"MLflow is not installed in this Python ({err.name!r} is missing); run `make mlflow`, "
            "which installs requirements-mlflow.txt into .venv-mlflow"
        ) from None
    for logger in ("mlflow", "alembic"):  # their progress lines; warnings and errors still show
        logging.getLogger(logger).setLevel(logging.WARNING)
    return mlflow


def connect(mlflow: Any, tracking: str, registry: str) -> Any:
    """A client of the store, or one line naming the URI when it cannot be reached."""
    mlflow.set_tracking_uri(tracking)
    mlflow.set_registry_uri(registry)
    client = mlflow.MlflowClient()
    try:
        client.search_experiments(max_results=1)
        if registry != tracking:
            client.search_registered_models(max_results=1)
    except Exception as err:  # MlflowException, or the database driver's own
        hint = "unset MLFLOW_TRACKING_URI to use the SQLite store under ARTIFACTS/mlflow"
        if not os.environ.get("MLFLOW_TRACKING_URI", "").strip():  # the default store
            hint = "check that the folder is writable"
        raise UserError(f"cannot reach the MLflow store {shown(tracking)} ({why(err)}); start it, or {hint}") from None
    return client


def existing_version(client: Any, candidate: Candidate) -> Any | None:
    """The registered version of these exact bytes (its sha256 tag), if any; the oldest if several."""
    found = [
        v for v in client.search_model_versions(f"name = '{candidate.name}'") if v.tags.get(SHA_TAG) == candidate.sha256
    ]
    return min(found, key=lambda v: int(v.version)) if found else None


def experiment_id(client: Any, location: str | None) -> str:
    experiment = client.get_experiment_by_name(EXPERIMENT)
    if experiment is not None:
        return experiment.experiment_id
    return client.create_experiment(EXPERIMENT, artifact_location=location)


def input_example(artifacts: Path) -> Any:
    """The bundled sample (checked against the manifest), as float32 columns named after the features."""
    import pandas as pd

    sample = artifacts / ARTIFACT_NAMES["sample"]
    check_file(artifacts / MANIFEST_NAME, sample)
    frame = pd.read_csv(sample, dtype="float32")
    return frame[list(FEATURE_NAMES)]


def signature(mlflow: Any, output_name: str) -> Any:
    """Inputs: the 8 features by name, float32, all required. Output: the model's, float32."""
    types = importlib.import_module("mlflow.types")
    inputs = types.Schema([types.ColSpec("float", name) for name in FEATURE_NAMES])
    return mlflow.models.ModelSignature(inputs=inputs, outputs=types.Schema([types.ColSpec("float", output_name)]))


def log_and_register(
    mlflow: Any, client: Any, candidate: Candidate, artifacts: Path, experiment: str, example: Any
) -> Any:
    """A run holding the params, metrics, reports and the model; then its version, tagged."""
    import onnx

    model = onnx.load_from_string(candidate.data)
    if model.SerializeToString() != candidate.data:  # what MLflow writes must be the checked bytes
        raise RuntimeError(f"{candidate.path.name} does not serialize back to its own bytes")
    reports = [artifacts / MANIFEST_NAME, artifacts / ARTIFACT_NAMES["quant_report"]]
    versions = {name: importlib.import_module(name).__version__ for name in MODEL_REQUIREMENTS}
    with mlflow.start_run(experiment_id=experiment, run_name=candidate.name):
        mlflow.log_params(candidate.params)
        mlflow.set_tags({SHA_TAG: candidate.sha256, "file": candidate.path.name})
        for report in reports:
            mlflow.log_artifact(str(report))
        info = mlflow.onnx.log_model(
            model,
            name=candidate.name,
            signature=signature(mlflow, model.graph.output[0].name),
            input_example=example,
            pip_requirements=[f"{name}=={version}" for name, version in versions.items()],
            onnx_execution_providers=PROVIDERS,
            onnx_session_options=SESSION_OPTIONS,
            save_as_external_data=False,
            extra_files=[str(report) for report in reports],
            params=candidate.params,
        )
        mlflow.log_metrics(candidate.metrics, model_id=info.model_id)
    return mlflow.register_model(info.model_uri, candidate.name, tags={SHA_TAG: candidate.sha256})


def register(artifacts: Path) -> list[tuple[Candidate, str, bool]]:
    """Each model's (candidate, version, newly registered), with the alias set to that version."""
    models = candidates(artifacts)  # every check before the store is touched
    example = input_example(artifacts)  # the sample too, read once for every model
    tracking, registry, location = store_uris(artifacts)
    mlflow = load_mlflow()
    client = connect(mlflow, tracking, registry)
    done = []
    try:
        for candidate in models:
            version = existing_version(client, candidate)
            new = version is None
            if version is None:
                experiment = experiment_id(client, location)
                version = log_and_register(mlflow, client, candidate, artifacts, experiment, example)
            client.set_registered_model_alias(candidate.name, ALIAS, version.version)
            done.append((candidate, str(version.version), new))
    except mlflow.exceptions.MlflowException as err:  # the store refused, or went away mid-way
        raise UserError(f"MLflow store {shown(tracking)}: {why(err)}") from None
    return done


def main(argv: list[str] | None = None) -> int:
    parser = OneLineArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    parser.add_argument("--artifacts", type=Path, required=True, help="the folder `make all` built (manifest.json)")
    args = parser.parse_args(argv)
    for candidate, version, new in register(args.artifacts):
        state = "registered" if new else "unchanged, already registered"
        print(
            f"{candidate.name}: version {version} ({state}; sha256 {candidate.sha256[:12]}), "
            f"models:/{candidate.name}@{ALIAS}"
        )
    return 0


if __name__ == "__main__":
    run_cli(main, PROG)
