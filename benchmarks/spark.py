"""`make bench-spark`: the Spark job in local[2] against the alternatives a user would pick on one
machine, on the same generated rows, side by side in one run; it prints, it asserts nothing.

    python -m benchmarks.spark --artifacts artifacts --rows 5000000

- the Spark job (``python -m housing_runtime.spark.job``), on the rows as Parquet, and on one row (what
  starting Spark costs: the JVM, the session, the Python workers);
- a single-process pyarrow + onnxruntime script on the same Parquet (``benchmarks.alternatives``);
- the runtime CLI on the same rows as CSV.

Each is a child process, timed whole. CPU seconds and peak memory cover its whole process tree
(the JVM and Spark's Python workers too): this process is a child subreaper, so the workers'
CPU time is counted when they exit, and memory is the tree's summed RSS, sampled every 50 ms.
From the Spark job's CPU per row, it works out on paper what 1 billion rows cost on a cluster.
Last, inside one warm session, where Spark's time goes: reading and writing the Parquet with no
Python at all, then with a mapInArrow that only adds a column, then the job's own scoring.
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


def tools(artifacts: Path, tmp: Path) -> dict[str, tuple[list[str], Path]]:
    """Each tool's command and the output it writes (removed before each run)."""
    py, model = sys.executable, str(artifacts / config.ONNX_NAMES["uint8"])
    job = [py, "-m", "housing_runtime.spark.job", "--artifacts", str(artifacts), "--model", "uint8"]
    return {
        "Spark job, local[2]": (
            [*job, "--input", str(tmp / "rows"), "--output", str(tmp / "spark_out")],
            tmp / "spark_out",
        ),
        "Spark job, 1 row (start-up)": (
            [*job, "--input", str(tmp / "one"), "--output", str(tmp / "spark_one")],
            tmp / "spark_one",
        ),
        "pyarrow + onnxruntime, 1 process": (
            [py, "-m", "benchmarks.alternatives", "parquet", model, str(tmp / "rows"), str(tmp / "single.parquet")],
            tmp / "single.parquet",
        ),
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


def bench(artifacts: Path, tmp: Path, n_rows: int, repeats: int) -> dict:
    """Each tool on the inputs write_inputs made in ``tmp``, interleaved, best of ``repeats``."""
    become_subreaper()
    parquet_bytes = folder_bytes(tmp / "rows")
    commands = tools(artifacts, tmp)
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
    return result


def cluster_estimate(best: dict[str, Run], n_rows: int, parquet_bytes: int) -> dict:
    """1 billion rows on N executors of EXECUTOR_CORES cores, from the job's CPU per row here."""
    spark, start = best["Spark job, local[2]"], best["Spark job, 1 row (start-up)"]
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
    spark, start = runs["Spark job, local[2]"], runs["Spark job, 1 row (start-up)"]
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="benchmarks.spark", description=__doc__.splitlines()[0])
    parser.add_argument("--artifacts", type=Path, default=config.artifacts_dir(), help="the models' folder")
    parser.add_argument("--rows", type=int, default=5_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--measured", type=Path, help="also write the tables here, as bench-spark.md and .json")
    args = parser.parse_args(argv)
    if args.rows < FILE_ROWS or args.rows % FILE_ROWS:
        raise UserError(f"--rows must be a multiple of {FILE_ROWS:,}")
    with tempfile.TemporaryDirectory() as name:  # the rows are written once, for every measurement
        tmp = Path(name)
        write_inputs(tmp, args.rows)
        result = bench(args.artifacts, tmp, args.rows, args.repeats)
        result["warm_session"] = warm_session_breakdown(args.artifacts, tmp, args.rows, args.repeats)
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
        prov = tables.provenance("make bench-spark", spark_versions(), notes=notes)
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
