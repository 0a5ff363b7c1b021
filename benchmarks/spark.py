"""`make bench-spark`: the Spark job in local[2] against the alternatives a user would pick on one
machine, on the same generated rows, side by side in one run; it prints, it asserts nothing.

    python -m benchmarks.spark --artifacts artifacts --rows 5000000

- the Spark job (``python -m housing_runtime.spark.job``), on the rows as Parquet, and on one row (what
  starting Spark costs: the JVM, the session, the Python workers);
- a single-process pyarrow + onnxruntime script on the same Parquet (``benchmarks.alternatives``);
- MLflow's ``spark_udf`` on the uint8 model registered in a temporary SQLite store
  (``pipeline.deploy.mlflow_registry``), on the same Parquet in local[2] (``benchmarks.spark_udf``,
  in MLflow's venv: --mlflow-python), its predictions checked equal to the job's, row by row;
- the runtime CLI on the same rows as CSV.

Each is a child process, timed whole. CPU seconds and peak memory cover its whole process tree
(the JVM and Spark's Python workers too): this process is a child subreaper, so the workers'
CPU time is counted when they exit, and memory is the tree's summed RSS, sampled every 50 ms.
From the Spark job's CPU per row, it works out on paper what 1 billion rows cost on a cluster.
Last, inside one warm session, where Spark's time goes: reading and writing the Parquet with no
Python at all, then with a mapInArrow that only adds a column, then the job's own scoring; and the
same for spark_udf (a pandas UDF returning zeros, then spark_udf), with its Python side split
into pyfunc's schema enforcement and onnxruntime.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks import measured as tables
from benchmarks.process_tree import become_subreaper, measured
from benchmarks.runtime import Run, house_block, write_rows_csv
from housing_runtime.errors import UserError, run_cli
from pipeline import config

FILE_ROWS = 1_000_000
# On paper: executors of this many cores each, and cluster sizes to work out.
EXECUTOR_CORES = 4
CLUSTER_EXECUTORS = (10, 50, 200)
BILLION = 1_000_000_000
REPO = Path(__file__).resolve().parents[1]
# The registered model spark_udf scores: the uint8 one, at the version the registry module aliased.
UDF_MODEL_URI = "models:/california-housing-uint8@current"
JOB, UDF = "Spark job, local[2]", "MLflow spark_udf, local[2]"
JOB_START, UDF_START = "Spark job, 1 row (start-up)", "MLflow spark_udf, 1 row (start-up)"


def write_rows_parquet(folder: Path, n_rows: int) -> None:
    """The rows write_rows_csv writes, as Parquet files of FILE_ROWS rows, with an id column."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder.mkdir()
    block = house_block(min(FILE_ROWS, n_rows))
    for k in range(n_rows // block.shape[0]):
        columns = {"id": pa.array(np.arange(k * len(block), (k + 1) * len(block)))}
        columns |= {f: pa.array(block[:, j]) for j, f in enumerate(config.FEATURE_NAMES)}
        pq.write_table(pa.table(columns), folder / f"part-{k:05d}.parquet")


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.iterdir())


def in_mlflow_venv(python: str) -> list[str]:
    """The start of a command run by MLflow's venv with the checkout's pipeline and runtime on its
    path (``env`` execs it: the same process, so its time and memory are measured as the others')."""
    return ["env", f"PYTHONPATH={REPO}:{REPO / 'runtime' / 'src'}", python]


def register_uint8(mlflow_python: str, artifacts: Path, tmp: Path) -> str:
    """The models registered in a new SQLite store under ``tmp`` (untimed); its tracking URI."""
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    cmd = [*in_mlflow_venv(mlflow_python), "-m", "pipeline.deploy.mlflow_registry", "--artifacts", str(artifacts)]
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri}
    env.pop("MLFLOW_REGISTRY_URI", None)
    out = subprocess.run(cmd, cwd=tmp, env=env, capture_output=True, text=True, timeout=600)
    if out.returncode != 0:
        raise UserError(f"registering the models for spark_udf failed: {out.stderr.strip()[-300:]}")
    return uri


def tools(artifacts: Path, tmp: Path, mlflow: tuple[str, str] | None = None) -> dict[str, tuple[list[str], Path]]:
    """Each tool's command and the output it writes (removed before each run). ``mlflow``: MLflow's
    python and the tracking URI holding the registered model, for spark_udf."""
    py, model = sys.executable, str(artifacts / config.ONNX_NAMES["uint8"])
    job = [py, "-m", "housing_runtime.spark.job", "--artifacts", str(artifacts), "--model", "uint8"]
    peers: dict[str, tuple[list[str], Path]] = {}
    if mlflow is not None:
        python, uri = mlflow
        udf = [*in_mlflow_venv(python), "-m", "benchmarks.spark_udf", "score", "--tracking-uri", uri]
        udf += ["--model-uri", UDF_MODEL_URI, "--input", str(tmp / "rows"), "--output", str(tmp / "udf_out")]
        peers[UDF] = (udf, tmp / "udf_out")
        one = [*udf[: udf.index("--input")], "--input", str(tmp / "one"), "--output", str(tmp / "udf_one")]
        peers[UDF_START] = (one, tmp / "udf_one")
    return {
        JOB: (
            [*job, "--input", str(tmp / "rows"), "--output", str(tmp / "spark_out")],
            tmp / "spark_out",
        ),
        JOB_START: (
            [*job, "--input", str(tmp / "one"), "--output", str(tmp / "spark_one")],
            tmp / "spark_one",
        ),
        "pyarrow + onnxruntime, 1 process": (
            [py, "-m", "benchmarks.alternatives", "parquet", model, str(tmp / "rows"), str(tmp / "single.parquet")],
            tmp / "single.parquet",
        ),
        **peers,
        "CLI, CSV in and out": (
            [
                py,
                "-m",
                "housing_runtime",
                "--artifacts",
                str(artifacts),
                "--model",
                "uint8",
                "--input",
                str(tmp / "rows.csv"),
                "--output",
                str(tmp / "cli.csv"),
            ],
            tmp / "cli.csv",
        ),
    }


def remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()


def write_inputs(tmp: Path, n_rows: int) -> None:
    """The rows as Parquet (rows/) and CSV (rows.csv), and one of them as Parquet (one/)."""
    import pyarrow.parquet as pq

    write_rows_parquet(tmp / "rows", n_rows)
    write_rows_csv(tmp / "rows.csv", n_rows)
    (tmp / "one").mkdir()
    pq.write_table(pq.read_table(tmp / "rows" / "part-00000.parquet").slice(0, 1), tmp / "one" / "p.parquet")


def bench(artifacts: Path, tmp: Path, n_rows: int, repeats: int, mlflow: tuple[str, str] | None = None) -> dict:
    """Each tool on the inputs write_inputs made in ``tmp``, interleaved, best of ``repeats``."""
    become_subreaper()
    parquet_bytes = folder_bytes(tmp / "rows")
    commands = tools(artifacts, tmp, mlflow)
    runs: dict[str, list[Run]] = {tool: [] for tool in commands}
    for _ in range(repeats):  # interleaved, so every tool sees the same machine state
        for tool, (cmd, output) in commands.items():
            remove(output)
            runs[tool].append(measured(cmd))
    best = {tool: min(tool_runs, key=lambda r: r.wall) for tool, tool_runs in runs.items()}
    rows = {tool: (1 if "1 row" in tool else n_rows) for tool in best}
    runs_json = {
        tool: {"rows": rows[tool], "wall": r.wall, "cpu": r.cpu, "peak_rss_bytes": r.peak_rss}
        for tool, r in best.items()
    }
    result = {"rows": n_rows, "repeats": repeats, "parquet_bytes": parquet_bytes, "runs": runs_json}
    result["cluster"] = cluster_estimate(best, n_rows, parquet_bytes)
    if UDF in commands:  # the last repeat's outputs are still there
        result["spark_udf"] = {
            "model_uri": UDF_MODEL_URI,
            "rows_equal": same_predictions(tmp / "spark_out", tmp / "udf_out"),
        }
    return result


def same_predictions(job_out: Path, udf_out: Path) -> int:
    """The rows on which spark_udf predicts exactly what the job predicts (by id): all, or it raises."""
    import pyarrow.parquet as pq

    job = pq.read_table(job_out, columns=["id", "prediction"]).sort_by("id")
    udf = pq.read_table(udf_out, columns=["id", "prediction"]).sort_by("id")
    if not job["id"].equals(udf["id"]) or not np.array_equal(
        job["prediction"].to_numpy(), udf["prediction"].to_numpy()
    ):
        diff = np.flatnonzero(job["prediction"].to_numpy() != udf["prediction"].to_numpy())
        raise RuntimeError(f"spark_udf's predictions differ from the job's on {diff.size:,} rows")
    return job.num_rows


def cluster_estimate(best: dict[str, Run], n_rows: int, parquet_bytes: int) -> dict:
    """1 billion rows on N executors of EXECUTOR_CORES cores, from the job's CPU per row here."""
    spark, start = best[JOB], best[JOB_START]
    cpu_per_row = (spark.cpu - start.cpu) / n_rows
    gb = parquet_bytes / n_rows * BILLION / 1e9
    estimate: dict = {
        "cpu_seconds_per_row": cpu_per_row,
        "core_hours_per_billion": cpu_per_row * BILLION / 3600,
        "input_gb_per_billion": gb,
        "executor_cores": EXECUTOR_CORES,
        "start_up_seconds": start.wall,
        "wall_minutes": {},
        "mb_per_second_per_core": {},
    }
    for n in CLUSTER_EXECUTORS:
        minutes = (cpu_per_row * BILLION / (n * EXECUTOR_CORES) + start.wall) / 60
        estimate["wall_minutes"][str(n)] = minutes
        estimate["mb_per_second_per_core"][str(n)] = gb * 1e3 / (minutes * 60) / (n * EXECUTOR_CORES)
    return estimate


def spark_markdown(result: dict) -> str:
    """The tables `make bench-spark` prints and writes (MEASURED/bench-spark.md): the tools, where
    the time goes in a warm session, and 1 billion rows on a cluster on paper."""
    runs, repeats, n_rows = result["runs"], result["repeats"], result["rows"]
    lines = [
        f"| tool | rows | wall s (best of {repeats}) | rows/s | CPU s | CPU / wall | peak memory MB |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for tool, r in runs.items():
        rate = f"{r['rows'] / r['wall']:,.0f}" if r["rows"] > 1 else "-"
        lines.append(
            f"| {tool} | {r['rows']:,} | {r['wall']:.2f} | {rate} | {r['cpu']:.2f} | "
            f"{r['cpu'] / r['wall']:.2f} | {r['peak_rss_bytes'] / 1e6:,.0f} |"
        )
    spark, start = runs[JOB], runs[JOB_START]
    single, cli = runs["pyarrow + onnxruntime, 1 process"], runs["CLI, CSV in and out"]
    lines += [
        "",
        f"The Spark job takes {spark['wall'] / single['wall']:.1f}x the single process's wall time and "
        f"{spark['wall'] / cli['wall']:.1f}x the CLI's; without its start-up ({start['wall']:.1f} s, "
        f"{start['cpu']:.0f} CPU seconds), {(spark['wall'] - start['wall']) / single['wall']:.1f}x the single "
        "process's.",
    ]
    warm = result.get("warm_session")
    if warm:
        lines += [
            "",
            f"| inside one warm local[2] session, {n_rows:,} rows | wall s (best of {repeats}) |",
            "|---|---:|",
        ]
        lines += [f"| {step} | {seconds:.2f} |" for step, seconds in warm.items()]
        steps = list(warm.values())
        lines += [
            "",
            f"Python's round trip through mapInArrow adds {steps[1] - steps[0]:.2f} s to Spark's own reading and "
            f"writing, and the job's work (validation, onnxruntime) {steps[2] - steps[1]:.2f} s more.",
        ]
    if "spark_udf" in result:
        lines += udf_markdown(result)
    c = result["cluster"]
    lines += [
        "",
        f"1 billion rows on paper: the job's CPU above its 1-row start-up is {c['cpu_seconds_per_row'] * 1e6:.2f} µs "
        f"per row, {c['core_hours_per_billion']:.2f} core-hours per billion rows; at this data's "
        f"{result['parquet_bytes'] / n_rows:.0f} bytes of Parquet per row, a billion rows are about "
        f"{c['input_gb_per_billion']:.0f} GB. With executors of {c['executor_cores']} cores, the time is "
        f"1e9 × {c['cpu_seconds_per_row'] * 1e6:.2f} µs / ({c['executor_cores']} N) plus a start-up like this "
        f"one's ({c['start_up_seconds']:.1f} s):",
        "",
        f"| executors ({c['executor_cores']} cores each) | minutes | input each core must read |",
        "|---:|---:|---:|",
    ]
    for n, minutes in c["wall_minutes"].items():
        lines.append(f"| {n} | {minutes:.1f} | {c['mb_per_second_per_core'][n]:.0f} MB/s |")
    return "\n".join(lines) + "\n"


def udf_markdown(result: dict) -> list[str]:
    """spark_udf against the job: the ratio of their rows/s, and where each spends its time."""
    runs, repeats, n_rows, udf = result["runs"], result["repeats"], result["rows"], result["spark_udf"]
    job, job_start, peer, peer_start = runs[JOB], runs[JOB_START], runs[UDF], runs[UDF_START]
    ratio = peer["wall"] / job["wall"]  # (rows / job wall) / (rows / spark_udf wall)
    job_work, peer_work = job["wall"] - job_start["wall"], peer["wall"] - peer_start["wall"]
    warm_ratio = f"{peer_work / job_work:.2f}x" if job_work > 0 and peer_work > 0 else "not measurable at this size"
    verdict = "meets the goal of 2x" if ratio >= 2 else "falls short of the goal of 2x"
    lines = [
        "",
        f"MLflow's spark_udf on the registered uint8 model (`{udf['model_uri']}`, env_manager local) predicts "
        f"exactly the job's float32 value on all {udf['rows_equal']:,} rows. The job scores "
        f"{job['rows'] / job['wall']:,.0f} rows/s, spark_udf {peer['rows'] / peer['wall']:,.0f}: the job's rate is "
        f"**{ratio:.2f}x** spark_udf's, which {verdict}. Without their 1-row start-ups ({job_start['wall']:.1f} s "
        f"and {peer_start['wall']:.1f} s), {warm_ratio}.",
    ]
    warm, job_warm = udf.get("warm_session"), result.get("warm_session")
    if warm and job_warm:
        lines += [
            "",
            f"| inside one warm local[2] session, spark_udf, {n_rows:,} rows | wall s (best of {repeats}) |",
            "|---|---:|",
        ]
        lines += [f"| {step} | {seconds:.2f} |" for step, seconds in warm.items()]
        io, hop, scored = list(warm.values())[:3]
        job_io, job_hop, job_scored = list(job_warm.values())
        lines += [
            "",
            f"On the same Parquet I/O (the job's session {job_io:.2f} s, spark_udf's {io:.2f} s), the job's Python "
            f"hop (mapInArrow, Arrow batches) costs {job_hop - job_io:.2f} s and its scoring "
            f"{job_scored - job_hop:.2f} s; "
            f"spark_udf's hop (a pandas UDF: Arrow to pandas and back) costs {hop - io:.2f} s and its scoring "
            f"{scored - hop:.2f} s.",
        ]
    per_million = udf.get("python_side_per_million")
    if per_million:
        whole, enforce, ort = per_million.values()
        lines += [
            "",
            "| spark_udf's Python side, one core, 1,000,000 rows in batches of 10,000 | CPU s |",
            "|---|---:|",
        ]
        lines += [f"| {part} | {seconds:.3f} |" for part, seconds in per_million.items()]
        lines += [
            f"| the rest of predict (the DataFrame into a tensor, the output DataFrame) | {whole - enforce - ort:.3f} |"
        ]
    return lines


def zeros_column(batches):
    """A mapInArrow function that does no work: the Python round trip's own cost."""
    import pyarrow as pa

    for batch in batches:
        yield pa.RecordBatch.from_arrays(
            [*batch.columns, pa.array(np.zeros(batch.num_rows, np.float32))], names=[*batch.schema.names, "prediction"]
        )


def warm_session_breakdown(artifacts: Path, tmp: Path, n_rows: int, repeats: int) -> dict[str, float]:
    """Wall seconds of three writes of the same rows (tmp/rows) in one local[2] session, best of
    ``repeats``."""
    import pyspark.sql.types as T

    from housing_runtime.spark import environment, job

    scorer = job.load_scorer(artifacts, "uint8", "prediction")
    spark = environment.local_session("local[2]")
    try:
        frame = spark.read.parquet(str(tmp / "rows"))
        schema = T.StructType([*frame.schema.fields, T.StructField("prediction", T.FloatType(), True)])
        steps = {
            "Spark reads and writes the Parquet, no Python": lambda out: frame.write.parquet(out),
            "+ a mapInArrow that only adds a column of zeros": lambda out: frame.mapInArrow(
                zeros_column, schema
            ).write.parquet(out),
            "+ the job's scoring (validation, onnxruntime)": lambda out: job.score(
                spark, scorer, str(tmp / "rows"), out
            ),
        }
        times: dict[str, list[float]] = {step: [] for step in steps}
        for _ in range(repeats):
            for step, write in steps.items():
                remove(tmp / "out")
                start = time.perf_counter()
                write(str(tmp / "out"))
                times[step].append(time.perf_counter() - start)
    finally:
        spark.stop()
    return {step: min(t) for step, t in times.items()}


def udf_breakdown(python: str, uri: str, tmp: Path, repeats: int) -> dict:
    """benchmarks.spark_udf breakdown in MLflow's venv: its warm session and its Python side."""
    cmd = [*in_mlflow_venv(python), "-m", "benchmarks.spark_udf", "breakdown", "--tracking-uri", uri]
    cmd += [
        "--model-uri",
        UDF_MODEL_URI,
        "--input",
        str(tmp / "rows"),
        "--scratch",
        str(tmp),
        "--repeats",
        str(repeats),
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=3600)
    if out.returncode != 0:
        raise UserError(f"benchmarks.spark_udf breakdown failed: {out.stderr.strip()[-300:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="benchmarks.spark", description=__doc__.splitlines()[0])
    parser.add_argument("--artifacts", type=Path, default=config.artifacts_dir(), help="the models' folder")
    parser.add_argument("--rows", type=int, default=5_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--measured", type=Path, help="also write the tables here, as bench-spark.md and .json")
    parser.add_argument("--mlflow-python", help="MLflow's venv's python (requirements-mlflow.txt): adds spark_udf")
    args = parser.parse_args(argv)
    if args.rows < FILE_ROWS or args.rows % FILE_ROWS:
        raise UserError(f"--rows must be a multiple of {FILE_ROWS:,}")
    with tempfile.TemporaryDirectory() as name:  # the rows are written once, for every measurement
        tmp = Path(name)
        write_inputs(tmp, args.rows)
        mlflow = None
        if args.mlflow_python:
            (tmp / "mlflow").mkdir()
            python = os.path.abspath(args.mlflow_python)  # not resolved: a venv's python is a symlink
            mlflow = (python, register_uint8(python, args.artifacts.resolve(), tmp / "mlflow"))
        result = bench(args.artifacts, tmp, args.rows, args.repeats, mlflow)
        result["warm_session"] = warm_session_breakdown(args.artifacts, tmp, args.rows, args.repeats)
        if mlflow is not None:
            result["spark_udf"] |= udf_breakdown(*mlflow, tmp, args.repeats)
    result["machine"] = {"machine": os.uname().machine, "cpus": os.cpu_count()}
    body = spark_markdown(result)
    print(body)
    print(json.dumps(result))
    if args.measured is not None:
        notes = (
            []
            if args.rows == 5_000_000
            else [f"Run at {args.rows:,} rows (SPARK_BENCH_ROWS), not the default 5,000,000."]
        )
        versions = spark_versions() | (
            {"mlflow-skinny": result["spark_udf"]["mlflow"]} if "spark_udf" in result else {}
        )
        prov = tables.provenance("make bench-spark", versions, notes=notes)
        tables.write(args.measured, "bench-spark", body, result, prov)
    return 0


def spark_versions() -> dict[str, str]:
    """pyspark's, pyarrow's and Java's versions."""
    from importlib import metadata

    versions = {}
    for name in ("pyspark", "pyarrow"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    java = subprocess.run(["java", "-version"], capture_output=True, text=True)
    first = (java.stderr or java.stdout).splitlines()[:1]
    if first:
        versions["java"] = first[0].split('"')[1] if '"' in first[0] else first[0]
    return versions


if __name__ == "__main__":
    run_cli(main, "benchmarks.spark")
