"""Score a Parquet or CSV dataset on Spark with a verified model: the job's command line and driver.

    python -m housing_runtime.spark.job --input homes.parquet --output preds.parquet [--model uint8]
    spark-submit runtime/src/housing_runtime/spark/job.py --input s3a://bucket/homes/ --output s3a://bucket/preds/

Input: Parquet or CSV (a file, a folder or a glob, any URI Spark reads) holding the 8 feature columns in
any order, plus any other columns. Output: Parquet with every input column unchanged and a float
``prediction``. The driver checks the model's bytes against manifest.json before Spark starts;
each task re-hashes them, validates its rows with the runtime's core and predicts with one
single-threaded onnxruntime session. All or nothing: a bad row fails the job, and Spark's output
committer (algorithm 1, set here) commits no file; the output path must not exist yet.
Run with python, it starts its own session (--master, local[2] by default); under spark-submit
or Spark Connect it uses the platform's.
"""

from __future__ import annotations

import argparse
import re
import sys
import threading
from pathlib import Path

# Run as a file (spark-submit runtime/src/housing_runtime/spark/job.py): the package is two
# folders up.
if not __package__:
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import housing_runtime  # noqa: E402
from housing_runtime import config, integrity
from housing_runtime.errors import OneLineArgumentParser, UserError, install_signal_handlers, run_cli
from housing_runtime.model import Predictor, model_path
from housing_runtime.spark import environment
from housing_runtime.spark.failures import OutputExists, translated
from housing_runtime.spark.paths import (
    FORMATS,
    OutputClaim,
    check_paths,
    csv_headers_checked,
    default_fs_is_local,
    input_format,
)
from housing_runtime.spark.score import Scorer, is_feature_type

PROG = "score-spark"
LOG_LEVELS = ("off", "fatal", "error", "warn", "info", "debug", "trace", "all")
MAX_BATCH_ROWS = 2**31 - 1  # Spark's setting is a Java int
# Spark's committer, algorithm 1: tasks commit into the job's temporary folder and only the job's
# commit moves their files into place, so a failed job leaves no data file in the output.
COMMITTER = {"mapreduce.fileoutputcommitter.algorithm.version": "1"}


# ---- The model ---------------------------------------------------------------------------
def load_scorer(artifacts: Path, variant: str, prediction: str) -> Scorer:
    """The verified model's bytes, read once on the driver, and what the tasks need to use them."""
    path = model_path(artifacts, variant)
    data = integrity.read_checked(artifacts / config.MANIFEST_NAME, path)
    predictor = Predictor(path, data)  # refuses a model that does not take [N, 8], before Spark starts
    return Scorer(data, integrity.sha256_bytes(data), path.name, predictor.feature_names, prediction)


# ---- Spark ----------------------------------------------------------------------------------
def read_input(spark, uri: str, fmt: str, local_fs: bool = True):
    """A DataFrame of the input. CSV columns are text: the tasks parse the features with the same
    checks as every other value, and the other columns pass through as text. As in the CLI, names
    and fields are trimmed of surrounding spaces, and every file must have the same header (see
    csv_headers_checked). Parquet files' schemas are merged, so a column that only some files
    have is carried through too (null elsewhere)."""
    if fmt == "csv":
        checked = csv_headers_checked(uri, local_fs)
        options = {
            "header": "true",
            "mode": "FAILFAST",
            "enforceSchema": "true" if checked else "false",
            "ignoreLeadingWhiteSpace": "true",
            "ignoreTrailingWhiteSpace": "true",
        }
        return spark.read.options(**options).csv(uri)
    return spark.read.option("mergeSchema", "true").parquet(uri)


def check_schema(schema, scorer: Scorer) -> None:
    """Every feature present, as numbers or text; the prediction column not already taken."""
    from pyspark.sql.pandas.types import to_arrow_type

    names = schema.fieldNames()
    missing = [f for f in scorer.features if f not in names]
    if missing:
        lowered = {n.lower(): n for n in names}
        near = [f"{lowered[f.lower()]!r} for {f!r}" for f in missing if f.lower() in lowered]
        hint = f" (found {', '.join(near)}: names are case-sensitive)" if near else ""
        # Spark renames a CSV header's repeated names by position: MedInc -> MedInc1, MedInc5.
        twice = [f for f in missing if sum(bool(re.fullmatch(re.escape(f) + r"\d+", n)) for n in names) > 1]
        if twice:
            hint = f" (the header names {', '.join(map(repr, twice))} more than once)"
        raise UserError(
            f"the input has no column {', '.join(map(repr, missing))}{hint}; it needs the 8 features "
            f"{', '.join(scorer.features)}, in any order"
        )
    for field in schema.fields:
        if field.name in scorer.features and not is_feature_type(to_arrow_type(field.dataType)):
            raise UserError(f"column {field.name!r} is {field.dataType.simpleString()}; features must be numbers")
    taken = [n for n in names if n.lower() == scorer.prediction.lower()]  # Spark's names ignore case
    if taken:
        raise UserError(f"the input already has a column {taken[0]!r}; pass --prediction-column NAME")


def score(
    spark,
    scorer: Scorer,
    input_uri: str,
    output_uri: str,
    fmt: str = "auto",
    batch_rows: int = environment.ARROW_BATCH_ROWS,
) -> None:
    """Read, predict in every task, write Parquet: all or nothing."""
    import pyspark.sql.types as T
    from pyspark import cloudpickle

    # The tasks run the driver's own copy of the package, shipped by value in the closure: the
    # executors need numpy, pyarrow and onnxruntime, not this package.
    cloudpickle.register_pickle_by_value(housing_runtime)
    local_fs = default_fs_is_local(spark)
    check_paths(input_uri, output_uri, local_fs)
    fmt = input_format(input_uri, fmt, local_fs)
    try:
        spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", str(batch_rows))
        # Timestamps as Parquet's standard UTC microseconds, as most writers make them, so they read
        # back as the type they were (Spark's default, INT96, reads back as nanoseconds, no zone).
        spark.conf.set("spark.sql.parquet.outputTimestampType", "TIMESTAMP_MICROS")
        frame = read_input(spark, input_uri, fmt, local_fs)
        check_schema(frame.schema, scorer)
        out_schema = T.StructType([*frame.schema.fields, T.StructField(scorer.prediction, T.FloatType(), True)])
        writer = frame.mapInArrow(scorer, out_schema).write.mode("error").options(**COMMITTER)
    except UserError:
        raise
    except Exception as err:
        raise translated(err) from None
    claim = OutputClaim.before_job(output_uri, local_fs)
    write_all_or_nothing(spark, lambda: writer.parquet(output_uri), claim)


def write_all_or_nothing(spark, write, claim: OutputClaim) -> None:
    """Run the job's write in a thread, so that a signal reaches this one while Spark works. The
    job is then cancelled, and has ended, before its output is removed: removing it while tasks
    still commit would leave a partial output that Spark then marks complete."""
    outcome: list[BaseException] = []

    def run() -> None:
        try:
            write()
        except BaseException as err:  # handed to the main thread
            outcome.append(err)

    worker = threading.Thread(target=run, name="score-spark-write", daemon=True)
    worker.start()
    try:
        while worker.is_alive():
            worker.join(0.1)
    except BaseException:  # Interrupted, KeyboardInterrupt: nothing may remain of this run
        cancel_jobs(spark)
        worker.join()
        claim.remove()
        raise
    if outcome:
        problem = outcome[0] if isinstance(outcome[0], UserError) else translated(outcome[0])
        if not isinstance(problem, OutputExists):  # someone else's folder is not ours to remove
            claim.remove(keep_committed=True)
        raise problem from None


def cancel_jobs(spark) -> None:
    try:
        if hasattr(spark, "interruptAll"):  # Spark Connect and Spark 3.5+ classic sessions
            spark.interruptAll()
        else:
            spark.sparkContext.cancelAllJobs()
    except Exception:  # the session may be going down already; the join below still waits
        pass


# ---- Command line -----------------------------------------------------------------------------
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = OneLineArgumentParser(prog=PROG, description=__doc__.split("\n")[0])
    p.add_argument("--input", required=True, help="Parquet or CSV file or folder (any URI Spark reads)")
    p.add_argument("--output", required=True, help="new Parquet folder for the input columns plus the prediction")
    p.add_argument("--model", choices=config.MODEL_VARIANTS, default=config.MODEL_VARIANTS[0])
    p.add_argument(
        "--artifacts",
        type=Path,
        default=config.artifacts_dir(),
        help="folder holding the ONNX models and manifest.json (default: $ARTIFACTS or ./artifacts)",
    )
    p.add_argument(
        "--input-format",
        choices=("auto", *FORMATS),
        default="auto",
        help="auto: by the name (.csv, .parquet) or a local folder's files; else parquet",
    )
    p.add_argument("--prediction-column", default="prediction")
    p.add_argument(
        "--batch-rows",
        type=int,
        default=environment.ARROW_BATCH_ROWS,
        help="rows per Arrow batch in a task (bounds its memory)",
    )
    p.add_argument(
        "--master",
        default="local[2]",
        help="Spark master of the session the job starts itself (not under spark-submit)",
    )
    p.add_argument(
        "--spark-log-level",
        default="off",
        type=str.lower,
        choices=LOG_LEVELS,
        help="Spark's own logging in that session (default off)",
    )
    args = p.parse_args(argv)
    if not 1 <= args.batch_rows <= MAX_BATCH_ROWS:
        p.error(f"--batch-rows must be from 1 to {MAX_BATCH_ROWS:,}, not {args.batch_rows:,}")
    if not args.prediction_column.strip():
        p.error("--prediction-column must name a column")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    scorer = load_scorer(args.artifacts, args.model, args.prediction_column)
    if environment.submitted():  # the platform's file system: score() checks the paths
        from pyspark.sql import SparkSession

        score(SparkSession.builder.getOrCreate(), scorer, args.input, args.output, args.input_format, args.batch_rows)
    else:
        check_paths(args.input, args.output)  # before the JVM starts; score() checks again
        spark = environment.local_session(args.master, args.spark_log_level)
        # pyspark's own SIGINT handler cancels from inside the signal (a reentrant Py4J call that
        # prints tracebacks); ours unwinds to write_all_or_nothing, which cancels and cleans up.
        install_signal_handlers()
        try:
            score(spark, scorer, args.input, args.output, args.input_format, args.batch_rows)
        finally:
            spark.stop()
    print(f"{PROG}: wrote {args.output} ({args.model} model; the input's columns plus {args.prediction_column!r})")
    return 0


if __name__ == "__main__":
    run_cli(main, PROG)
