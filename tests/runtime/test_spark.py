"""The Spark job, in local[2]: the same predictions as onnxruntime on the same float32 rows,
every input column carried through, a bad row fails the job with nothing committed, and a
tampered model or a missing Java stops it before Spark starts.

Marked ``spark``: skipped with the reason where pyspark or Java is missing, never in CI
(.ci/run installs both and sets HOUSING_REQUIRE_SPARK=1). The session is conftest's ``spark``.
"""

from __future__ import annotations

import dataclasses
import decimal
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from helpers import REPO, make, run_module
from housing_runtime.errors import UserError
from pipeline import config

try:  # requirements-spark.txt; without it conftest skips every test here, with the reason
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    from housing_runtime.spark import job
except ImportError:
    pa = None

pytestmark = [pytest.mark.spark, pytest.mark.integration]

FEATURES = config.FEATURE_NAMES
SCALES = np.array([2, 12, 2, 0.4, 1100, 10, 2, 2])
MEANS = np.array([4, 28, 5, 1, 1400, 3, 35, -120])


# ---- Data and references ----------------------------------------------------------------------
def house_rows(n: int, seed: int = 0) -> np.ndarray:
    """(n, 8) float64 California-like rows."""
    rng = np.random.default_rng(seed)
    return np.abs(rng.normal(size=(n, 8)) * SCALES + MEANS)


def write_parts(folder: Path, X: np.ndarray, parts: int, extra=None, order=FEATURES) -> Path:
    """X as ``parts`` Parquet files with an id column, the features in ``order`` and any
    ``extra`` columns (name -> function of the row ids)."""
    folder.mkdir(parents=True)
    ids = np.arange(len(X))
    for k, rows in enumerate(np.array_split(ids, parts)):
        columns = {"id": pa.array(rows)}
        columns |= {name: fn(rows) for name, fn in (extra or {}).items()}
        columns |= {f: pa.array(X[rows, FEATURES.index(f)]) for f in order}
        pq.write_table(pa.table(columns), folder / f"part-{k}.parquet")
    return folder


def onnxruntime_predictions(model: Path, X32: np.ndarray) -> np.ndarray:
    """A plain single-process onnxruntime run: the reference every Spark prediction must equal."""
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: X32})[0].reshape(-1)


def scored(output: Path):
    table = pq.read_table(output)
    return table.sort_by("id")


def scored_by_text_id(output: Path, key: str = "id"):
    """The output of a CSV input, in the order of its id column (text, as CSV columns stay)."""
    table = pq.read_table(output)
    return table.take(np.argsort(np.array(table[key].to_pylist(), dtype=np.int64)))


def write_csv_rows(path: Path, X: np.ndarray, id_name: str = "id", sep: str = ",") -> list[str]:
    """X as a CSV file with an id column first; returns its lines."""
    lines = [sep.join([id_name, *FEATURES])] + [sep.join([str(i), *map(str, row)]) for i, row in enumerate(X)]
    path.write_text("\n".join(lines) + "\n")
    return lines


def committed_files(output: Path) -> list[str]:
    """What a reader of the output would see: data files and the success marker."""
    if not output.exists():
        return []
    return sorted(
        p.name for p in output.rglob("*") if p.is_file() and "_temporary" not in p.parts and not p.name.startswith(".")
    )


def run_job(spark, built: Path, src, dst, model: str = "uint8", **options) -> None:
    scorer = job.load_scorer(built, model, options.pop("prediction", "prediction"))
    job.check_paths(str(src), str(dst))
    job.score(spark, scorer, str(src), str(dst), **options)


# ---- Predictions ----------------------------------------------------------------------------------
@pytest.mark.parametrize("model", config.MODEL_VARIANTS)
def test_every_prediction_equals_onnxruntime_on_the_same_float32_rows(spark, built, tmp_path, model):
    X = house_rows(300_000)
    src = write_parts(tmp_path / "homes", X, parts=6)
    run_job(spark, built, src, tmp_path / "preds", model, batch_rows=10_000)
    out = scored(tmp_path / "preds")
    assert out["id"].to_pylist() == list(range(len(X)))  # every id once, none lost, none twice
    expected = onnxruntime_predictions(built / config.ONNX_NAMES[model], X.astype(np.float32))
    np.testing.assert_array_equal(out["prediction"].to_numpy(), expected)
    assert out.schema.field("prediction").type == pa.float32()


def test_columns_in_any_order_and_every_other_column_pass_through_unchanged(spark, built, tmp_path):
    X = house_rows(5_000, seed=1)
    extra = {
        "address": lambda ids: pa.array([f"{i} Main St, «Ünïcode»" for i in ids]),
        "zip": lambda ids: pa.array((ids % 90_000 + 10_000).astype(np.int32)),
        "listed": lambda ids: pa.array(ids.astype("timedelta64[s]") + np.datetime64("2026-01-01T00:00:00")).cast(
            pa.timestamp("us", tz="UTC")
        ),
        "price": lambda ids: pa.array([decimal.Decimal(int(i)) / 100 for i in ids], pa.decimal128(12, 2)),
        "tags": lambda ids: pa.array([[int(i), int(i) + 1] for i in ids]),
        "sold": lambda ids: pa.array(ids % 2 == 0),
    }
    order = tuple(reversed(FEATURES))
    src = write_parts(tmp_path / "homes", X, parts=3, extra=extra, order=order)
    run_job(spark, built, src, tmp_path / "preds")
    out = scored(tmp_path / "preds")
    given = pq.read_table(src).sort_by("id")
    assert out.column_names == [*given.column_names, "prediction"]
    assert out.drop(["prediction"]).equals(given)
    expected = onnxruntime_predictions(built / config.ONNX_NAMES["uint8"], X.astype(np.float32))
    np.testing.assert_array_equal(out["prediction"].to_numpy(), expected)


def test_feature_columns_of_any_numeric_type_are_cast_to_float32(spark, built, tmp_path):
    X = np.round(house_rows(2_000, seed=2))
    folder = tmp_path / "homes"
    folder.mkdir()
    types = [
        pa.float32(),
        pa.int64(),
        pa.int32(),
        pa.float64(),
        pa.decimal128(10, 0),
        pa.int16(),
        pa.float64(),
        pa.float32(),
    ]
    columns = {"id": pa.array(np.arange(len(X)))}
    columns |= {f: pa.array(X[:, j]).cast(t) for j, (f, t) in enumerate(zip(FEATURES, types, strict=True))}
    pq.write_table(pa.table(columns), folder / "typed.parquet")
    run_job(spark, built, folder, tmp_path / "preds")
    expected = onnxruntime_predictions(built / config.ONNX_NAMES["uint8"], X.astype(np.float32))
    np.testing.assert_array_equal(scored(tmp_path / "preds")["prediction"].to_numpy(), expected)


def test_a_csv_folder_is_scored_like_the_same_rows_in_parquet(spark, built, tmp_path):
    X = np.round(house_rows(20_000, seed=3), 4)
    folder = tmp_path / "homes_csv"
    folder.mkdir()
    for k, rows in enumerate(np.array_split(np.arange(len(X)), 2)):
        columns = {"id": pa.array(rows), "city": pa.array([f"c{i}" for i in rows])}
        columns |= {f: pa.array(X[rows, FEATURES.index(f)]) for f in reversed(FEATURES)}
        pacsv.write_csv(pa.table(columns), folder / f"part-{k}.csv")
    run_job(spark, built, folder, tmp_path / "preds")  # the format is found from the folder's files
    out = scored_by_text_id(tmp_path / "preds")
    assert out["id"].to_pylist() == [str(i) for i in range(len(X))]  # CSV columns stay text
    assert out["city"].to_pylist() == [f"c{i}" for i in range(len(X))]
    expected = onnxruntime_predictions(built / config.ONNX_NAMES["uint8"], X.astype(np.float32))
    np.testing.assert_array_equal(out["prediction"].to_numpy(), expected)


def test_csv_files_with_other_column_orders_are_refused_not_misread(spark, built, tmp_path):
    """Spark applies one file's header to every file by position unless told to check them."""
    X = np.round(house_rows(200, seed=12), 4)
    folder = tmp_path / "homes_csv"
    folder.mkdir()
    for k, (rows, order) in enumerate([(np.arange(100), FEATURES), (np.arange(100, 200), FEATURES[::-1])]):
        columns = {"id": pa.array(rows)} | {f: pa.array(X[rows, FEATURES.index(f)]) for f in order}
        pacsv.write_csv(pa.table(columns), folder / f"part-{k}.csv")
    with pytest.raises(
        UserError,
        match=r"part-1.csv' has 'Longitude' as column 2 of its header where .*part-0.csv' "
        r"has 'MedInc'; every file needs the same header",
    ) as err:
        run_job(spark, built, folder, tmp_path / "preds")
    assert "\n" not in str(err.value)
    assert not (tmp_path / "preds").exists()


def test_csv_headers_spark_renames_are_accepted_as_pandas_writes_them(spark, built, tmp_path):
    """pandas' default to_csv has an empty first name (its index): Spark names it _c0."""
    X = np.round(house_rows(300, seed=16), 4)
    write_csv_rows(tmp_path / "homes.csv", X, id_name="")
    run_job(spark, built, tmp_path / "homes.csv", tmp_path / "preds")
    out = scored_by_text_id(tmp_path / "preds", key="_c0")
    expected = onnxruntime_predictions(built / config.ONNX_NAMES["uint8"], X.astype(np.float32))
    np.testing.assert_array_equal(out["prediction"].to_numpy(), expected)


def test_csv_names_and_fields_are_trimmed_as_the_cli_trims_them(spark, built, tmp_path):
    X = np.round(house_rows(50, seed=13), 3)
    lines = write_csv_rows(tmp_path / "homes.csv", X, sep=", ")
    run_job(spark, built, tmp_path / "homes.csv", tmp_path / "preds")
    out = scored_by_text_id(tmp_path / "preds")
    # The CLI takes exactly the 8 features: the same lines without the id.
    (tmp_path / "cli.csv").write_text("\n".join(line.split(", ", 1)[1] for line in lines) + "\n")
    cli = run_module("housing_runtime", "--artifacts", str(built), "--input", str(tmp_path / "cli.csv"))
    assert cli.returncode == 0, cli.stderr
    from_cli = np.array(cli.stdout.decode().split()[1:], dtype=np.float32)
    np.testing.assert_array_equal(out["prediction"].to_numpy(), from_cli)


def test_parquet_files_with_different_columns_carry_every_column(spark, built, tmp_path):
    X = house_rows(200, seed=14)
    src = write_parts(tmp_path / "homes", X, parts=2)
    first = pq.read_table(src / "part-0.parquet")
    pq.write_table(
        first.append_column("listing", pa.array([f"L{i}" for i in range(len(first))])), src / "part-0.parquet"
    )
    run_job(spark, built, src, tmp_path / "preds")
    out = scored(tmp_path / "preds")
    assert out["listing"].to_pylist() == [f"L{i}" for i in range(100)] + [None] * 100


@pytest.mark.parametrize(
    "name,content,words",
    [
        ("ragged.csv", "id,{features}\n1,1,2,3,4,5,6,7,8\n2,1,2,3\n", "MALFORMED_CSV_RECORD"),
        ("homes.parquet", "id,{features}\n1,1,2,3,4,5,6,7,8\n", "is not a Parquet file"),
    ],
)
def test_an_unreadable_input_is_one_line_naming_spark_s_reason(spark, built, tmp_path, name, content, words):
    (tmp_path / name).write_text(content.format(features=",".join(FEATURES)))
    with pytest.raises(UserError, match=words) as err:
        run_job(spark, built, tmp_path / name, tmp_path / "preds")
    assert err.value.exit_code == 2 and "\n" not in str(err.value)
    assert not (tmp_path / "preds").exists()


# ---- All or nothing ---------------------------------------------------------------------------------
BAD_VALUES = {
    "nan": (float("nan"), "nan is not a finite number"),
    "infinity": (float("inf"), "inf is not a finite number"),
    "float32 overflow": (1e39, "outside float32's range"),
    "null": (None, "the value is missing (null"),
}


@pytest.mark.parametrize("case", BAD_VALUES)
def test_a_bad_value_in_any_row_fails_the_job_naming_column_and_value_and_commits_nothing(spark, built, tmp_path, case):
    value, words = BAD_VALUES[case]
    X = house_rows(40_000, seed=4)
    bad_row = 31_337
    src = write_parts(tmp_path / "homes", X, parts=4)
    table = pq.read_table(src / "part-3.parquet")
    column = table["Population"].to_pylist()
    column[bad_row - 30_000] = value
    pq.write_table(
        table.set_column(table.schema.get_field_index("Population"), "Population", pa.array(column, pa.float64())),
        src / "part-3.parquet",
    )
    with pytest.raises(UserError) as err:
        run_job(spark, built, src, tmp_path / "preds")
    message = str(err.value)
    assert "column 'Population'" in message and words in message and f"'id': {bad_row}" in message
    assert "\n" not in message
    assert not (tmp_path / "preds").exists()


@pytest.mark.parametrize(
    "text,words", [("abc", "'abc' is not a number"), ("", "missing (null"), ("nan", "nan is not a finite number")]
)
def test_a_bad_csv_field_fails_the_job_naming_it(spark, built, tmp_path, text, words):
    src = tmp_path / "homes.csv"
    rows = [",".join(["id", *FEATURES])] + [
        ",".join([str(i), *map(str, row)]) for i, row in enumerate(np.round(house_rows(1_000, seed=5), 3))
    ]
    rows[501] = ",".join(["500", "1.5", text, *rows[501].split(",")[3:]])
    src.write_text("\n".join(rows) + "\n")
    with pytest.raises(UserError) as err:
        run_job(spark, built, src, tmp_path / "preds")
    assert "column 'HouseAge'" in str(err.value) and words in str(err.value) and "'id': '500'" in str(err.value)
    assert not (tmp_path / "preds").exists()


def test_spark_itself_commits_no_file_when_a_task_fails(spark, built, tmp_path, monkeypatch):
    """The all-or-nothing claim rests on Spark's committer, not on our clean-up: without the
    clean-up, a failed job still leaves no data file and no _SUCCESS, although the tasks before
    the bad one finished and committed theirs."""
    X = house_rows(100_000, seed=6)
    X[99_999, 0] = np.nan  # in the last file, which the last task reads
    src = write_parts(tmp_path / "homes", X, parts=8)
    monkeypatch.setattr(job.OutputClaim, "remove", lambda *_args, **_kw: None)
    # One task per file (opening a file "costs" more than a partition holds), two at a time.
    previous = spark.conf.get("spark.sql.files.openCostInBytes")
    spark.conf.set("spark.sql.files.openCostInBytes", str(1 << 30))
    try:
        assert spark.read.parquet(str(src)).rdd.getNumPartitions() == 8
        with pytest.raises(UserError, match="column 'MedInc'"):
            run_job(spark, built, src, tmp_path / "preds", batch_rows=1_000)
    finally:
        spark.conf.set("spark.sql.files.openCostInBytes", previous)
    assert committed_files(tmp_path / "preds") == []


def test_an_existing_output_is_refused_and_left_as_it_was(spark, built, tmp_path):
    src = write_parts(tmp_path / "homes", house_rows(100), parts=1)
    old = tmp_path / "preds"
    old.mkdir()
    (old / "keep.txt").write_text("the user's")
    with pytest.raises(UserError, match="already exists"):
        run_job(spark, built, src, old)
    assert (old / "keep.txt").read_text() == "the user's" and len(list(old.iterdir())) == 1


def test_an_output_made_by_someone_else_after_the_check_is_left_alone(spark, built, tmp_path, monkeypatch):
    """Spark refuses a path that appeared after the job's own check (another run, another user);
    the job must not take that folder for its own and remove it."""
    src = write_parts(tmp_path / "homes", house_rows(100), parts=1)
    theirs = tmp_path / "preds"
    theirs.mkdir()
    (theirs / "keep.txt").write_text("someone else's")
    monkeypatch.setattr(job, "check_paths", lambda *_args: None)  # as if it was made just after the check
    with pytest.raises(UserError, match="already exists"):
        job.score(spark, job.load_scorer(built, "uint8", "prediction"), str(src), str(theirs))
    assert (theirs / "keep.txt").read_text() == "someone else's"


def test_a_failed_job_removes_the_parent_folders_it_made_and_nothing_more(spark, built, tmp_path):
    X = house_rows(1_000, seed=11)
    X[10, 2] = np.nan
    src = write_parts(tmp_path / "homes", X, parts=1)
    (tmp_path / "out").mkdir()
    with pytest.raises(UserError, match="column 'AveRooms'"):
        run_job(spark, built, src, tmp_path / "out" / "new" / "deeper" / "preds")
    assert list((tmp_path / "out").iterdir()) == []


@pytest.mark.parametrize(
    "output,local_fs", [("homes", True), ("homes/preds", True), (".", True), ("homes", False), ("homes/preds", False)]
)
def test_an_output_overlapping_the_input_is_refused(tmp_path, output, local_fs):
    """Also where plain paths are on a cluster's file system (or Spark Connect's), by their text."""
    (tmp_path / "homes").mkdir()
    with pytest.raises(UserError, match="overlaps the input|is the input"):
        job.check_paths(str(tmp_path / "homes"), str(tmp_path / output), local_fs)


def test_a_missing_feature_or_a_taken_prediction_column_is_one_line(spark, built, tmp_path):
    src = write_parts(tmp_path / "homes", house_rows(100), parts=1)
    with pytest.raises(UserError, match="already has a column 'HouseAge'"):
        run_job(spark, built, src, tmp_path / "preds", prediction="HouseAge")
    table = pq.read_table(src).rename_columns(["id", "medinc", *FEATURES[1:]])
    pq.write_table(table, src / "part-0.parquet")
    with pytest.raises(UserError, match=r"no column 'MedInc' \(found 'medinc' for 'MedInc'"):
        run_job(spark, built, src, tmp_path / "preds")
    assert not (tmp_path / "preds").exists()


def test_a_feature_column_that_is_not_a_number_is_refused_by_type(spark, built, tmp_path):
    src = write_parts(tmp_path / "homes", house_rows(100), parts=1, order=FEATURES[:-1])
    table = pq.read_table(src / "part-0.parquet").append_column("Longitude", pa.array([True] * 100))
    pq.write_table(table, src / "part-0.parquet")
    with pytest.raises(UserError, match="column 'Longitude' is boolean; features must be numbers"):
        run_job(spark, built, src, tmp_path / "preds")


def test_the_scorer_carries_the_package_by_value_to_a_python_without_it(built, tmp_path):
    """What a task on a cluster gets: the pickled closure, in a Python where `housing_runtime`
    cannot be imported (an executor has numpy, pyarrow and onnxruntime, not this package; the
    venv here has it, editable, so the task's Python refuses it with an import hook)."""
    from pyspark import cloudpickle

    import housing_runtime

    scorer = job.load_scorer(built, "uint8", "prediction")
    cloudpickle.register_pickle_by_value(housing_runtime)
    (tmp_path / "scorer.pkl").write_bytes(cloudpickle.dumps(scorer))
    X = house_rows(1_000, seed=9)
    pq.write_table(
        pa.table({"id": np.arange(len(X)), **{f: X[:, j] for j, f in enumerate(FEATURES)}}), tmp_path / "rows.parquet"
    )
    task = (
        "import sys, pickle, pyarrow.parquet as pq\n"
        "class Refuse:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('housing_runtime', 'pipeline'):\n"
        "            raise ImportError(f'{name} is not installed on this executor')\n"
        "sys.meta_path.insert(0, Refuse())\n"
        "try:\n    import housing_runtime\nexcept ImportError:\n    pass\n"
        "else:\n    sys.exit('housing_runtime is importable here; the test would prove nothing')\n"
        "scorer = pickle.loads(open('scorer.pkl', 'rb').read())\n"
        "batches = pq.read_table('rows.parquet').to_batches(max_chunksize=300)\n"
        "out = [b.column('prediction').to_numpy() for b in scorer(iter(batches))]\n"
        "import numpy; numpy.save('pred.npy', numpy.concatenate(out))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run(
        [sys.executable, "-c", task], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    expected = onnxruntime_predictions(built / config.ONNX_NAMES["uint8"], X.astype(np.float32))
    np.testing.assert_array_equal(np.load(tmp_path / "pred.npy"), expected)


def test_a_task_refuses_model_bytes_that_changed_in_transit(built):
    scorer = job.load_scorer(built, "uint8", "prediction")
    damaged = dataclasses.replace(scorer, model_bytes=scorer.model_bytes[:-1] + b"\0")
    with pytest.raises(UserError, match="different sha256 than the driver checked"):
        next(damaged(iter([])))


# ---- The command line, as users run it ------------------------------------------------------------
def without_java() -> dict[str, str]:
    """An environment in which no Java can be found: any attempt to start Spark fails."""
    path = ":".join(p for p in os.environ["PATH"].split(":") if not (Path(p) / "java").exists())
    return {"PATH": path, "JAVA_HOME": ""}


def one_line(stderr: bytes | str) -> str:
    text = stderr.decode() if isinstance(stderr, bytes) else stderr
    lines = text.strip().splitlines()
    assert len(lines) == 1, text
    return lines[0]


def test_a_tampered_model_is_refused_before_spark_starts(built_copy, tmp_path):
    model = built_copy / config.ONNX_NAMES["uint8"]
    model.write_bytes(model.read_bytes() + b"\0")
    src = write_parts(tmp_path / "homes", house_rows(10), parts=1)
    env = {**without_java(), "ARTIFACTS": str(built_copy)}  # Spark could not start even if it tried
    result = run_module("housing_runtime.spark.job", "--input", str(src), "--output", str(tmp_path / "out"), env=env)
    assert result.returncode == 2
    assert "does not match its sha256" in one_line(result.stderr)
    assert not (tmp_path / "out").exists()


def test_without_java_the_job_says_what_to_install(built, tmp_path):
    src = write_parts(tmp_path / "homes", house_rows(10), parts=1)
    result = run_module(
        "housing_runtime.spark.job",
        "--input",
        str(src),
        "--output",
        str(tmp_path / "out"),
        "--artifacts",
        str(built),
        env=without_java(),
    )
    assert result.returncode == 1
    assert "openjdk-17-jre-headless" in one_line(result.stderr)


@pytest.mark.parametrize("signal_name", ["SIGTERM"])
def test_a_signal_while_tasks_write_cancels_the_job_and_leaves_no_output(built, tmp_path, signal_name):
    """The job is cancelled and has ended before its output is removed: removing it while tasks
    still commit would leave a partial output that Spark then marks complete."""
    import signal

    src = write_parts(tmp_path / "homes", np.tile(house_rows(100_000, seed=10), (20, 1)), parts=4)
    out = tmp_path / "preds"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "housing_runtime.spark.job",
            "--artifacts",
            str(built),
            "--input",
            str(src),
            "--output",
            str(out),
        ],
        cwd=REPO,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while not (out / "_temporary").exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert proc.poll() is None, "the job ended before it was writing"
        proc.send_signal(getattr(signal, signal_name))
        _, stderr = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 128 + getattr(signal, signal_name)
    assert one_line(stderr) == f"score-spark: interrupted ({signal_name})"
    assert not out.exists()


def test_make_score_spark_scores_a_users_parquet_file(built, tmp_path):
    X = house_rows(50_000, seed=7)
    table = pa.table({"id": np.arange(len(X)), **{f: X[:, j] for j, f in enumerate(FEATURES)}})
    pq.write_table(table, tmp_path / "homes.parquet")
    result = make(
        "score-spark",
        f"INPUT={tmp_path / 'homes.parquet'}",
        f"OUTPUT={tmp_path / 'preds.parquet'}",
        "VARIANT=float",
        artifacts=built,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""  # Spark's own output stays out of the user's terminal
    expected = onnxruntime_predictions(built / config.ONNX_NAMES["float"], X.astype(np.float32))
    np.testing.assert_array_equal(scored(tmp_path / "preds.parquet")["prediction"].to_numpy(), expected)


def test_make_score_spark_without_input_is_one_line(built, tmp_path):
    result = make("score-spark", artifacts=built)
    assert result.returncode == 2 and "INPUT=" in one_line(result.stderr)


def test_the_job_runs_unchanged_on_spark_connect(built, tmp_path):
    """Spark Connect (Databricks serverless, shared clusters) has no SparkFiles and no broadcast:
    the model and the code reach the tasks in the closure. A local Connect server stands in."""
    X = house_rows(30_000, seed=15)
    src = write_parts(tmp_path / "homes", X, parts=3)
    env = {"SPARK_REMOTE": "local[2]", "PYSPARK_PYTHON": sys.executable, "ARTIFACTS": str(built)}
    good = run_module("housing_runtime.spark.job", "--input", str(src), "--output", str(tmp_path / "preds"), env=env)
    assert good.returncode == 0, good.stderr.decode()[-2000:]
    expected = onnxruntime_predictions(built / config.ONNX_NAMES["uint8"], X.astype(np.float32))
    np.testing.assert_array_equal(scored(tmp_path / "preds")["prediction"].to_numpy(), expected)

    X[20_000, 6] = np.nan
    shutil.rmtree(src)
    write_parts(src, X, parts=3)
    bad = run_module("housing_runtime.spark.job", "--input", str(src), "--output", str(tmp_path / "bad"), env=env)
    assert bad.returncode == 2
    ours = [line for line in bad.stderr.decode().splitlines() if line.startswith("score-spark: ")]
    assert len(ours) == 1 and "'id': 20000" in ours[0] and "column 'Latitude': nan is not a finite" in ours[0]
    assert committed_files(tmp_path / "bad") == []  # the server's folder: no data file, no _SUCCESS


def test_spark_submit_runs_the_job_file_from_any_folder_without_the_repository_on_the_path(built, tmp_path):
    """As on a cluster: spark-submit runs the file; the tasks get the package in the closure."""
    X = house_rows(20_000, seed=8)
    X[12_345, 4] = np.inf
    src = write_parts(tmp_path / "homes", X, parts=2)
    submit = Path(sys.executable).with_name("spark-submit")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYSPARK_PYTHON"] = sys.executable
    cmd = [
        str(submit),
        "--master",
        "local[2]",
        "--conf",
        "spark.ui.enabled=false",
        str(REPO / "runtime" / "src" / "housing_runtime" / "spark" / "job.py"),
        "--artifacts",
        str(built),
        "--input",
        str(src),
        "--output",
        str(tmp_path / "preds"),
    ]
    bad = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2
    # spark-submit copies the Python driver's stderr into its own stdout, beside the platform's
    # log: the job's error is one line of that.
    ours = [line for line in (bad.stdout + bad.stderr).splitlines() if line.startswith("score-spark: ")]
    assert (
        len(ours) == 1
        and ours[0].startswith("score-spark: error: row {'id': 12345")
        and "column 'Population': inf is not a finite number" in ours[0]
    ), bad.stderr[-3000:]
    assert not (tmp_path / "preds").exists()

    X[12_345, 4] = 1000.0
    shutil.rmtree(src)
    write_parts(src, X, parts=2)
    good = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert good.returncode == 0, good.stderr[-2000:]
    expected = onnxruntime_predictions(built / config.ONNX_NAMES["uint8"], X.astype(np.float32))
    np.testing.assert_array_equal(scored(tmp_path / "preds")["prediction"].to_numpy(), expected)
