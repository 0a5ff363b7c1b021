"""Benchmarks, measured side by side in one run; they print ratios, they assert nothing.

    python -m benchmarks.runtime runtime --alternatives-python PY
                                                   # 1M and 5M rows: the CLI vs pandas and pyarrow scripts
    python -m benchmarks.runtime image IMAGE BASELINE BASE
                                                   # image size over the base, start to first prediction

`make bench` and `make bench-image` run these with the right arguments.
"""

from __future__ import annotations

import argparse
import filecmp
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from benchmarks import measured
from housing_runtime.errors import UserError, run_cli
from housing_runtime.io.native import PURE_ENV as PURE_SWITCH
from pipeline import config


def house_block(n_rows: int, decimals: int | None = 4) -> np.ndarray:
    """(n_rows, 8) California-like rows with 4 decimals (or full precision: None), the same for
    every benchmark."""
    rng = np.random.default_rng(0)
    scales = np.array([2, 12, 2, 0.4, 1100, 10, 2, 2])
    means = np.array([4, 28, 5, 1, 1400, 3, 35, -120])
    rows = np.abs(rng.normal(size=(n_rows, 8)) * scales + means)
    return rows if decimals is None else rows.round(decimals)


def write_rows_csv(path: Path | str, n_rows: int, block_rows: int = 1_000_000, full_precision: bool = False) -> None:
    """n_rows of California-like rows: one formatted block, written as often as needed. With
    full_precision, each value has its shortest float64 repr (17 digits, as pandas writes
    computed ratios such as AveRooms), not 4 decimals."""
    block = house_block(min(block_rows, n_rows), None if full_precision else 4)
    text = "\n".join(",".join(row) for row in block.astype(str).tolist()) + "\n"
    with open(path, "w") as fh:
        fh.write(",".join(config.FEATURE_NAMES) + "\n")
        for _ in range(n_rows // block.shape[0]):
            fh.write(text)


def write_rows_jsonl(csv_path: Path | str, jsonl_path: Path | str) -> None:
    """The same rows as JSON Lines, one object per line, written in blocks."""
    with open(csv_path) as src, open(jsonl_path, "w") as out:
        names = src.readline().strip().split(",")
        while block := src.readlines(1 << 24):
            out.writelines(
                json.dumps(dict(zip(names, map(float, line.split(",")), strict=True))) + "\n" for line in block
            )


@dataclass(frozen=True)
class Run:
    wall: float  # seconds
    cpu: float  # user + system seconds
    peak_rss: int  # bytes


def timed_child(cmd: list[str], env: dict[str, str] | None = None) -> Run:
    """Wall time, CPU time and peak RSS of one child process."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        assert proc.stderr is not None  # stderr=PIPE
        raise UserError(f"{' '.join(cmd[:6])} ... failed: {proc.stderr.read().decode().strip()[:300]}")
    return Run(elapsed, usage.ru_utime + usage.ru_stime, usage.ru_maxrss * 1024)


def in_child(code: str, *args: str) -> None:
    """Generate inputs in a child: Linux carries a process's peak RSS across exec, so a large
    parent would inflate the measured tools' peaks."""
    subprocess.run(
        [sys.executable, "-c", "import sys; from benchmarks import runtime as benchmark; " + code, *args], check=True
    )


# The same rows with every value at full precision (17 digits), at the first size.
FULL_CLI, FULL_PANDAS = "CLI, CSV, 17-digit values", "pandas script, 17-digit values"
# The CLI without its compiled fast paths (runtime/src/housing_runtime/io/native.py): what they are worth.
PURE_TOOL = "CLI, CSV, pure Python"
PURE_ENV = {**os.environ, PURE_SWITCH: "1"}


def bench_runtime(artifacts_dir: Path, sizes: list[int], alternatives_python: str, repeats: int) -> dict:
    """The CLI against a pandas and a pyarrow script on the same CSV rows, interleaved, the best
    of ``repeats`` each; the CLI without its compiled fast paths, whose output must be the same
    bytes; and at the first size, the CLI on the same rows as JSON Lines, and the CLI and the
    pandas script on rows of 17-digit values."""
    model = str(artifacts_dir / config.ONNX_NAMES["uint8"])
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in sizes:
            src, out = Path(tmp) / f"rows_{n}.csv", Path(tmp) / "out.csv"
            cli_out, pure_out, jsonl_out = (Path(tmp) / f"{name}.csv" for name in ("cli", "pure", "jsonl"))
            in_child("benchmark.write_rows_csv(sys.argv[1], int(sys.argv[2]))", str(src), str(n))
            alternative = [alternatives_python, "-m", "benchmarks.alternatives"]

            def cli(source: Path, dest: Path) -> list[str]:
                return [
                    sys.executable,
                    "-m",
                    "housing_runtime",
                    "--artifacts",
                    str(artifacts_dir),
                    "--input",
                    str(source),
                    "--output",
                    str(dest),
                ]

            tools = {
                "CLI, CSV": cli(src, cli_out),
                "pandas script": [*alternative, "pandas", model, str(src), str(out)],
                "pyarrow script": [*alternative, "pyarrow", model, str(src), str(out)],
                PURE_TOOL: cli(src, pure_out),
            }
            if n == sizes[0]:
                jsonl = Path(tmp) / f"rows_{n}.jsonl"
                in_child("benchmark.write_rows_jsonl(sys.argv[1], sys.argv[2])", str(src), str(jsonl))
                tools["CLI, JSON Lines"] = cli(jsonl, jsonl_out)
                full = Path(tmp) / f"rows_{n}_full.csv"
                in_child(
                    "benchmark.write_rows_csv(sys.argv[1], int(sys.argv[2]), full_precision=True)", str(full), str(n)
                )
                tools[FULL_CLI] = cli(full, out)
                tools[FULL_PANDAS] = [*alternative, "pandas", model, str(full), str(out)]
            runs: dict[str, list[Run]] = {tool: [] for tool in tools}
            for _ in range(repeats):  # interleaved, so every tool sees the same machine state
                for tool, cmd in tools.items():
                    runs[tool].append(timed_child(cmd, PURE_ENV if tool == PURE_TOOL else None))
            # Compared in blocks: reading them whole would raise the next children's peak RSS.
            if not filecmp.cmp(cli_out, pure_out, shallow=False):
                raise UserError(f"{n:,} rows: the CLI's output differs with and without its compiled fast paths")
            if n == sizes[0] and not filecmp.cmp(cli_out, jsonl_out, shallow=False):
                raise UserError(f"{n:,} rows: the CLI predicts the rows differently from CSV and from JSON Lines")
            for tool, tool_runs in runs.items():
                best = min(tool_runs, key=lambda r: r.wall)
                results.append(
                    {"rows": n, "tool": tool, "wall": best.wall, "cpu": best.cpu, "peak_rss_bytes": best.peak_rss}
                )
            for path in Path(tmp).iterdir():
                path.unlink()
    return {"sizes": sizes, "repeats": repeats, "runs": results}


def runtime_markdown(result: dict) -> str:
    """The table `make bench` prints and writes (MEASURED/bench.md), then the ratios it reads off."""
    results, sizes, repeats = result["runs"], result["sizes"], result["repeats"]

    def get(n: int, tool: str) -> dict:
        return next(r for r in results if r["rows"] == n and r["tool"] == tool)

    lines = [
        f"| rows | tool | wall s (best of {repeats}) | CPU s | CPU / wall | peak RSS MB | wall / CLI's |",
        "|---:|---|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        cli = get(r["rows"], "CLI, CSV")
        lines.append(
            f"| {r['rows']:,} | {r['tool']} | {r['wall']:.2f} | {r['cpu']:.2f} | {r['cpu'] / r['wall']:.2f} | "
            f"{r['peak_rss_bytes'] / 1e6:.0f} | {r['wall'] / cli['wall']:.2f} |"
        )
    lines.append("")
    for n in sizes:
        cli = get(n, "CLI, CSV")
        lines.append(
            f"- {n:,} rows: the CLI takes {cli['wall'] / get(n, 'pandas script')['wall']:.2f}x the pandas script's "
            f"wall time and {cli['wall'] / get(n, 'pyarrow script')['wall']:.2f}x the pyarrow script's."
        )
    first, last = get(sizes[0], "CLI, CSV"), get(sizes[-1], "CLI, CSV")
    for n in sizes:
        speedup = get(n, PURE_TOOL)["wall"] / get(n, "CLI, CSV")["wall"]
        lines.append(
            f"- {n:,} rows: the compiled fast paths make the CLI {speedup:.2f}x faster (the same output bytes)."
        )
    full_ratio = get(sizes[0], FULL_CLI)["wall"] / get(sizes[0], FULL_PANDAS)["wall"]
    lines.append(
        f"- {sizes[0]:,} rows of 17-digit values: the CLI takes {full_ratio:.2f}x the pandas script's wall time."
    )
    jsonl = get(sizes[0], "CLI, JSON Lines")
    lines.append(f"- JSON Lines takes {jsonl['wall'] / first['wall']:.2f}x the CSV's wall time ({sizes[0]:,} rows).")
    memory = last["peak_rss_bytes"] / first["peak_rss_bytes"]
    lines.append(f"- {sizes[-1] // sizes[0]}x the rows: {memory:.2f}x the CLI's peak memory.")
    cpu = [r["cpu"] / r["wall"] for r in results if r["tool"].startswith("CLI")]
    lines.append(f"- The CLI's CPU time is {min(cpu):.2f}-{max(cpu):.2f}x its wall time (one core).")
    return "\n".join(lines) + "\n"


def docker_size(ref: str) -> int:
    out = subprocess.run(["docker", "image", "inspect", "--format", "{{.Size}}", ref], capture_output=True, text=True)
    if out.returncode != 0:
        raise UserError(f"image {ref} not found: {out.stderr.strip()}")
    return int(out.stdout)


def first_prediction_seconds(image: str) -> float:
    cmd = ["docker", "run", "--rm", "--read-only", "--network", "none", image]
    start = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True)
    elapsed = time.perf_counter() - start
    if out.returncode != 0 or not out.stdout.startswith(b"prediction"):
        raise UserError(f"{image} did not predict: {out.stderr.decode().strip()[:300]}")
    return elapsed


def bench_image(image: str, baseline: str, base: str, repeats: int) -> dict:
    base_size = docker_size(base)
    times: dict[str, list[float]] = {image: [], baseline: []}
    first_prediction_seconds(image), first_prediction_seconds(baseline)  # warm the page cache
    for _ in range(repeats):  # interleaved, so both see the same machine state
        for ref in (image, baseline):
            times[ref].append(first_prediction_seconds(ref))
    images = {}
    for ref in (image, baseline):
        images[ref] = {
            "added_bytes": docker_size(ref) - base_size,
            "median_seconds": statistics.median(times[ref]),
            "runs": times[ref],
        }
    return {"image": image, "baseline": baseline, "base": base, "repeats": repeats, "images": images}


def image_markdown(result: dict) -> str:
    """The table `make bench-image` prints and writes (MEASURED/bench-image.md)."""
    image, baseline, images = result["image"], result["baseline"], result["images"]
    lines = [
        f"| image | added over {result['base']} (MB) | start to first prediction, median of {result['repeats']} (s) |",
        "|---|---:|---:|",
    ]
    for ref, what in ((image, image), (baseline, f"{baseline} (scikit-learn, built the same way)")):
        lines.append(f"| {what} | {images[ref]['added_bytes'] / 1e6:.0f} | {images[ref]['median_seconds']:.2f} |")
    size_ratio = images[baseline]["added_bytes"] / images[image]["added_bytes"]
    time_ratio = images[baseline]["median_seconds"] / images[image]["median_seconds"]
    lines += [
        "",
        f"{image} is {size_ratio:.1f}x smaller over the base and {time_ratio:.2f}x faster to its first prediction.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="benchmarks.runtime", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="what", required=True)
    rt = sub.add_parser("runtime", help="the CLI against pandas and pyarrow scripts on generated rows")
    rt.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 5_000_000])
    rt.add_argument("--artifacts", type=Path, default=config.artifacts_dir(), help="the models' folder")
    rt.add_argument(
        "--alternatives-python", required=True, help="a python with pandas and pyarrow (requirements-bench.txt)"
    )
    rt.add_argument("--repeats", type=int, default=3)
    rt.add_argument("--measured", type=Path, help="also write the table here, as bench.md and bench.json")
    im = sub.add_parser("image", help="runtime image vs scikit-learn image")
    im.add_argument("image")
    im.add_argument("baseline")
    im.add_argument("base")
    im.add_argument("--repeats", type=int, default=5)
    im.add_argument("--measured", type=Path, help="also write the table here, as bench-image.md and bench-image.json")
    args = parser.parse_args(argv)
    if args.what == "runtime":
        result = bench_runtime(args.artifacts, args.sizes, args.alternatives_python, args.repeats)
        name, body = "bench", runtime_markdown(result)
        prov = measured.provenance("make bench", alternatives_versions(args.alternatives_python))
    else:
        result = bench_image(args.image, args.baseline, args.base, args.repeats)
        name, body = "bench-image", image_markdown(result)
        prov = measured.provenance("make bench-image", {"docker": docker_version()})
    print(body)
    print(json.dumps({"machine": os.uname().machine, "cpus": os.cpu_count()}))
    if args.measured is not None:
        measured.write(args.measured, name, body, result, prov)
    return 0


def alternatives_versions(python: str) -> dict[str, str]:
    """pandas' and pyarrow's versions in the alternatives' Python."""
    code = (
        "import json, pandas as p, pyarrow as a; print(json.dumps({'pandas': p.__version__, 'pyarrow': a.__version__}))"
    )
    out = subprocess.run([python, "-c", code], capture_output=True, text=True)
    return json.loads(out.stdout) if out.returncode == 0 else {}


def docker_version() -> str:
    out = subprocess.run(["docker", "version", "--format", "{{.Server.Version}}"], capture_output=True, text=True)
    return out.stdout.strip() or "unknown"


if __name__ == "__main__":
    run_cli(main, "benchmarks.runtime")
