"""Score a Parquet or CSV dataset on Spark with a verified model: the job's command line and driver.

    python -m pipeline.spark.job --input homes.parquet --output preds.parquet [--model uint8]
    spark-submit pipeline/spark/job.py --input s3a://bucket/homes/ --output s3a://bucket/preds/

Input: Parquet or CSV (a file or a folder, any URI Spark reads) holding the 8 feature columns in
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
import os
import re
import shutil
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

if not __package__:  # run as a file (spark-submit pipeline/spark/job.py): the package is two folders up
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import pipeline  # noqa: E402
from pipeline import config  # noqa: E402
from pipeline.errors import (  # noqa: E402
    EnvironmentFault,
    OneLineArgumentParser,
    UserError,
    install_signal_handlers,
    run_cli,
    shown,
)
from pipeline.runtime import integrity  # noqa: E402
from pipeline.runtime.files import nearest_existing_folder  # noqa: E402
from pipeline.runtime.model import Predictor, model_path  # noqa: E402
from pipeline.spark import environment  # noqa: E402
from pipeline.spark.score import Scorer, is_feature_type  # noqa: E402

PROG = "score-spark"
LOG_LEVELS = ("off", "fatal", "error", "warn", "info", "debug", "trace", "all")
MAX_BATCH_ROWS = 2**31 - 1  # Spark's setting is a Java int
FORMATS = ("parquet", "csv")
CSV_SUFFIXES = (".csv", ".csv.gz", ".csv.bz2")
# Spark's committer, algorithm 1: tasks commit into the job's temporary folder and only the job's
# commit moves their files into place, so a failed job leaves no data file in the output.
COMMITTER = {"mapreduce.fileoutputcommitter.algorithm.version": "1"}
USER_ERROR_LINE = re.compile(r"pipeline\.errors\.UserError: (.+)")
# The files a Parquet write of Spark's makes in its output folder (and their checksums).
SPARK_OUTPUT_FILE = re.compile(r"^\.?(part-\d{5}-[0-9a-f-]{36}.*|_SUCCESS)(\.crc)?$")


# ---- The model ---------------------------------------------------------------------------
def load_scorer(artifacts: Path, variant: str, prediction: str) -> Scorer:
    """The verified model's bytes, read once on the driver, and what the tasks need to use them."""
    path = model_path(artifacts, variant)
    data = integrity.read_checked(artifacts / config.MANIFEST_NAME, path)
    predictor = Predictor(path, data)  # refuses a model that does not take [N, 8], before Spark starts
    return Scorer(data, integrity.sha256_bytes(data), path.name, predictor.feature_names, prediction)


# ---- Paths --------------------------------------------------------------------------------
def local_path(uri: str, default_fs_local: bool = True) -> Path | None:
    """The file-system path of a local URI, None for any other scheme. A plain path is local
    only where the default file system is (on many clusters it is HDFS)."""
    parsed = urlparse(uri)
    if parsed.scheme == "file":
        return Path(parsed.path)
    if parsed.scheme or not default_fs_local:  # s3a://, gs://, abfss://, hdfs://, or a path on HDFS
        return None
    return Path(uri)


def default_fs_is_local(spark) -> bool:
    """Whether Spark resolves a plain path on this machine's file system (its fs.defaultFS)."""
    try:
        default_fs = spark.sparkContext._jsc.hadoopConfiguration().get("fs.defaultFS") or "file:///"
    except Exception:  # Spark Connect has no SparkContext: assume the cluster's own file system
        return False
    return default_fs.startswith("file:")


def input_format(uri: str, given: str) -> str:
    """parquet or csv: as given, else by the name's suffix, else by a local folder's files."""
    if given != "auto":
        return given
    name = uri.rstrip("/").lower()
    if name.endswith(CSV_SUFFIXES):
        return "csv"
    if name.endswith(".parquet"):
        return "parquet"
    path = local_path(uri)
    if path is not None and path.is_dir():
        names = [p.name.lower() for p in path.rglob("*") if p.is_file() and not p.name.startswith(("_", "."))]
        if names and all(n.endswith(CSV_SUFFIXES) for n in names):
            return "csv"
        if names and not all(n.endswith(".parquet") for n in names):
            raise UserError(f"cannot tell whether {shown(uri)} holds Parquet or CSV; pass --input-format")
    return "parquet"


GLOB_CHARS = set("*?[{")


def check_paths(input_uri: str, output_uri: str, default_fs_local: bool = True) -> None:
    """Refuse, before Spark starts, an output that would destroy or feed on the input, or that
    exists already (Spark's committer needs a fresh path to be all or nothing)."""
    src, dst = local_path(input_uri, default_fs_local), local_path(output_uri, default_fs_local)
    if input_uri.rstrip("/") == output_uri.rstrip("/"):
        raise UserError(f"--output {shown(output_uri)} is the input; choose a new path")
    if src is not None and not GLOB_CHARS & set(input_uri):  # Spark resolves remote paths and patterns
        if not src.exists():
            raise UserError(f"--input {shown(input_uri)} not found")
        if dst is not None:
            src_real, dst_real = src.resolve(), dst.resolve()
            if dst_real == src_real or src_real in dst_real.parents or dst_real in src_real.parents:
                raise UserError(f"--output {shown(output_uri)} overlaps the input {shown(input_uri)}; "
                                "write the predictions somewhere else")
    if dst is not None:
        if dst.exists() or dst.is_symlink():
            raise UserError(f"--output {shown(output_uri)} already exists; the job writes a new folder, all or "
                            "nothing: choose a new path, or remove the old one yourself")
        blocking = next((a for a in dst.parents if a.exists() or a.is_symlink()), None)
        if blocking is not None and not blocking.is_dir():
            raise UserError(f"--output {shown(output_uri)}: {shown(str(blocking))} is not a folder")


@dataclass(frozen=True)
class OutputClaim:
    """What existed of a local output path before the job: enough to remove exactly what the job
    made, and nothing else. ``folder`` is None for remote outputs (nothing is removed there)."""
    folder: Path | None
    existed: bool
    top_existing: Path | None   # the nearest ancestor that existed before the job

    @classmethod
    def before_job(cls, output_uri: str, default_fs_local: bool = True) -> OutputClaim:
        dst = local_path(output_uri, default_fs_local)
        if dst is None:
            return cls(None, False, None)
        dst = Path(os.path.abspath(dst))
        return cls(dst, dst.exists() or dst.is_symlink(), nearest_existing_folder(dst))

    def remove(self, keep_committed: bool = False) -> None:
        """Remove what Spark made for this job's output, once the job has ended: its temporary
        folder, its part files and marker, the folder and the parents it created, if then
        empty. Nothing else is touched, and nothing at all if the path existed before the job.
        ``keep_committed`` keeps an output that Spark committed (marked _SUCCESS)."""
        dst = self.folder
        if dst is None or self.existed or not dst.is_dir() or dst.is_symlink():
            return
        if keep_committed and (dst / "_SUCCESS").exists():
            return
        shutil.rmtree(dst / "_temporary", ignore_errors=True)
        for entry in dst.iterdir():
            if SPARK_OUTPUT_FILE.match(entry.name) and entry.is_file():
                entry.unlink(missing_ok=True)
        for folder in [dst, *dst.parents]:
            if folder == self.top_existing:
                break
            try:
                folder.rmdir()  # only if empty
            except OSError:
                break


# ---- Spark ----------------------------------------------------------------------------------
def read_input(spark, uri: str, fmt: str):
    """A DataFrame of the input. CSV columns are text: the tasks parse the features with the same
    checks as every other value, and the other columns pass through as text. As in the CLI, names
    and fields are trimmed of surrounding spaces. Every CSV file's header is checked against the
    first's (Spark's default applies the first by position to all: files with other column
    orders would be silently misread). Parquet files' schemas are merged, so a column that only
    some files have is carried through too (null elsewhere)."""
    if fmt == "csv":
        options = {"header": "true", "mode": "FAILFAST", "enforceSchema": "false",
                   "ignoreLeadingWhiteSpace": "true", "ignoreTrailingWhiteSpace": "true"}
        return spark.read.options(**options).csv(uri)
    return spark.read.option("mergeSchema", "true").parquet(uri)


def check_schema(schema, scorer: Scorer) -> None:
    """Every feature present, as numbers or text; the prediction column not already taken."""
    import pyspark.sql.types as T
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
        raise UserError(f"the input has no column {', '.join(map(repr, missing))}{hint}; it needs the 8 features "
                        f"{', '.join(scorer.features)}, in any order")
    for field in schema.fields:
        if field.name in scorer.features and not (isinstance(field.dataType, T.StringType)
                                                 or is_feature_type(to_arrow_type(field.dataType))):
            raise UserError(f"column {field.name!r} is {field.dataType.simpleString()}; features must be numbers")
    taken = [n for n in names if n.lower() == scorer.prediction.lower()]  # Spark's names ignore case
    if taken:
        raise UserError(f"the input already has a column {taken[0]!r}; pass --prediction-column NAME")


def java_causes(err: Exception) -> list[tuple[str | None, str, str]]:
    """(condition, Java class, message) of a Py4J error's Java exception and each of its causes,
    outermost first; empty for other errors."""
    causes, java = [], getattr(err, "java_exception", None)
    while java is not None and len(causes) < 20:
        try:
            condition = java.getCondition() if hasattr(java, "getCondition") else None
        except Exception:  # not a SparkThrowable
            condition = None
        causes.append((condition, java.getClass().getName(), str(java.getMessage() or "")))
        java = java.getCause()
    return causes


def first_line(text: str, default: str) -> str:
    return shown(next((line.strip() for line in text.splitlines() if line.strip()), default))[1:-1]


def condition_of(err: Exception) -> str | None:
    """Spark's error condition for ``err``: pyspark's own, else the deepest in its Java causes."""
    condition = err.getCondition() if hasattr(err, "getCondition") else None
    if condition:
        return condition
    return next((c for c, _, _ in reversed(java_causes(err)) if c), None)


def translated(err: Exception) -> UserError:
    """A failed Spark job as one line: a task's UserError as it was raised; Spark's classified
    errors (a path, a schema, a malformed record, a file that is not Parquet) as the user's, by
    their most specific condition and the root cause; anything else, such as a full disk, as the
    machine's, by its root cause."""
    text = str(err)
    found = USER_ERROR_LINE.search(text)
    if found:
        return UserError(found.group(1).strip())
    condition = condition_of(err)
    if condition == "PATH_ALREADY_EXISTS":
        return UserError("the output path already exists (made after the job checked it); the job writes a "
                         "new folder, all or nothing: choose a new path, or remove the old one yourself")
    causes = java_causes(err)
    if causes:
        classified = [(c, m) for c, _, m in causes if c]
        root_class, root = causes[-1][1], causes[-1][2]
        detail = first_line(classified[-1][1], condition) if classified else ""
        if root and not causes[-1][0]:
            detail = f"{detail}: {first_line(root, root_class)}" if detail else first_line(root, root_class)
        if classified and not root_class.startswith("java.io."):
            hint = "; if the input is CSV, pass --input-format csv" if "FILE_FOOTER" in condition else ""
            return UserError(f"Spark refused the job: {detail}{hint}")
        return EnvironmentFault(f"Spark failed: {detail or first_line(text, type(err).__name__)}")
    if condition:
        return UserError(f"Spark refused the job: {first_line(text, condition)}")
    return EnvironmentFault(f"Spark failed: {first_line(text, type(err).__name__)}")


def score(spark, scorer: Scorer, input_uri: str, output_uri: str, fmt: str = "auto",
          batch_rows: int = environment.ARROW_BATCH_ROWS) -> None:
    """Read, predict in every task, write Parquet: all or nothing."""
    import pyspark.sql.types as T
    from pyspark import cloudpickle
    # The tasks run the driver's own copy of the package, shipped by value in the closure: the
    # executors need numpy, pyarrow and onnxruntime, not this repository.
    cloudpickle.register_pickle_by_value(pipeline)
    local_fs = default_fs_is_local(spark)
    check_paths(input_uri, output_uri, local_fs)
    fmt = input_format(input_uri, fmt)
    try:
        spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", str(batch_rows))
        # Timestamps as Parquet's standard UTC microseconds, as most writers make them, so they read
        # back as the type they were (Spark's default, INT96, reads back as nanoseconds, no zone).
        spark.conf.set("spark.sql.parquet.outputTimestampType", "TIMESTAMP_MICROS")
        frame = read_input(spark, input_uri, fmt)
        check_schema(frame.schema, scorer)
        out_schema = T.StructType([*frame.schema.fields, T.StructField(scorer.prediction, T.FloatType(), True)])
        writer = frame.mapInArrow(scorer, out_schema).write.mode("errorifexists").options(**COMMITTER)
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
        err = outcome[0]
        problem = err if isinstance(err, UserError) else translated(err)
        if not isinstance(err, UserError) and condition_of(err) == "PATH_ALREADY_EXISTS":
            raise problem from None  # someone else's folder: not ours to remove
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
    p.add_argument("--artifacts", type=Path, default=config.artifacts_dir(),
                   help="folder holding the ONNX models and manifest.json (default: $ARTIFACTS or ./artifacts)")
    p.add_argument("--input-format", choices=("auto", *FORMATS), default="auto",
                   help="auto: by the name (.csv, .parquet) or a local folder's files; else parquet")
    p.add_argument("--prediction-column", default="prediction")
    p.add_argument("--batch-rows", type=int, default=environment.ARROW_BATCH_ROWS,
                   help="rows per Arrow batch in a task (bounds its memory)")
    p.add_argument("--master", default="local[2]",
                   help="Spark master of the session the job starts itself (not under spark-submit)")
    p.add_argument("--spark-log-level", default="off", type=str.lower, choices=LOG_LEVELS,
                   help="Spark's own logging in that session (default off)")
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
        score(SparkSession.builder.getOrCreate(), scorer, args.input, args.output, args.input_format,
              args.batch_rows)
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
