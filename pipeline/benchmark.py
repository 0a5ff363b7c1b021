"""Benchmarks, measured side by side in one run; they print ratios, they assert nothing.

    python -m pipeline.benchmark runtime           # 1M vs 10M CSV rows: time and peak memory
    python -m pipeline.benchmark image IMAGE BASELINE BASE
                                                   # image size over the base, start to first prediction

`make bench` and `make bench-image` run these with the right arguments.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from pipeline import config
from pipeline.errors import UserError, run_cli


def write_rows_csv(path: Path | str, n_rows: int, block_rows: int = 1_000_000) -> None:
    """n_rows of California-like rows: one formatted block, written as often as needed."""
    rng = np.random.default_rng(0)
    scales = np.array([2, 12, 2, 0.4, 1100, 10, 2, 2])
    means = np.array([4, 28, 5, 1, 1400, 3, 35, -120])
    block = np.abs(rng.normal(size=(min(block_rows, n_rows), 8)) * scales + means).round(4)
    text = "\n".join(",".join(row) for row in block.astype(str).tolist()) + "\n"
    with open(path, "w") as fh:
        fh.write(",".join(config.FEATURE_NAMES) + "\n")
        for _ in range(n_rows // block.shape[0]):
            fh.write(text)


def timed_child(cmd: list[str]) -> tuple[float, int]:
    """Wall seconds and peak RSS (bytes) of one child process."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise UserError(f"{' '.join(cmd[:6])} ... failed: {proc.stderr.read().decode().strip()[:300]}")
    return elapsed, usage.ru_maxrss * 1024


def bench_runtime(artifacts_dir: Path, sizes: list[int]) -> dict:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in sizes:
            src = Path(tmp) / f"rows_{n}.csv"
            # Generated in a child: Linux carries a process's peak RSS across exec, so a large
            # parent would inflate the runtime's measured peak.
            subprocess.run([sys.executable, "-c", "import sys; from pipeline.benchmark import write_rows_csv; "
                            "write_rows_csv(sys.argv[1], int(sys.argv[2]))", str(src), str(n)], check=True)
            cmd = [sys.executable, "-m", "pipeline.runtime", "--artifacts", str(artifacts_dir),
                   "--input", str(src), "--output", os.devnull]
            seconds, rss = timed_child(cmd)
            rows.append({"rows": n, "csv_bytes": src.stat().st_size, "seconds": seconds, "peak_rss_bytes": rss})
            src.unlink()
    first, last = rows[0], rows[-1]
    print("| rows | CSV MB | seconds | rows/s | peak RSS MB |\n|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['rows']:,} | {r['csv_bytes'] / 1e6:.0f} | {r['seconds']:.1f} | "
              f"{r['rows'] / r['seconds']:,.0f} | {r['peak_rss_bytes'] / 1e6:.0f} |")
    ratio = {"rows": last["rows"] / first["rows"], "time": last["seconds"] / first["seconds"],
             "memory": last["peak_rss_bytes"] / first["peak_rss_bytes"]}
    print(f"\n{ratio['rows']:.0f}x the rows: {ratio['time']:.2f}x the time, {ratio['memory']:.2f}x the peak memory")
    return {"runs": rows, "ratios": ratio}


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
    result = {}
    print(f"| image | added over {base} (MB) | start to first prediction, median of {repeats} (s) |")
    print("|---|---:|---:|")
    for ref in (image, baseline):
        added = docker_size(ref) - base_size
        result[ref] = {"added_bytes": added, "median_seconds": statistics.median(times[ref]), "runs": times[ref]}
        print(f"| {ref} | {added / 1e6:.0f} | {result[ref]['median_seconds']:.2f} |")
    size_ratio = result[baseline]["added_bytes"] / result[image]["added_bytes"]
    time_ratio = result[baseline]["median_seconds"] / result[image]["median_seconds"]
    print(f"\n{image} is {size_ratio:.1f}x smaller over the base and {time_ratio:.2f}x faster to its first prediction")
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pipeline.benchmark", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="what", required=True)
    rt = sub.add_parser("runtime", help="runtime scaling on generated CSV rows")
    rt.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 10_000_000])
    rt.add_argument("--artifacts", type=Path, default=config.artifacts_dir(), help="the models' folder")
    im = sub.add_parser("image", help="runtime image vs scikit-learn image")
    im.add_argument("image")
    im.add_argument("baseline")
    im.add_argument("base")
    im.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    if args.what == "runtime":
        bench_runtime(args.artifacts, args.sizes)
    else:
        bench_image(args.image, args.baseline, args.base, args.repeats)
    print(json.dumps({"machine": os.uname().machine, "cpus": os.cpu_count()}))
    return 0


if __name__ == "__main__":
    run_cli(main, "pipeline.benchmark")
