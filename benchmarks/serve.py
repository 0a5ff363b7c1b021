"""`make bench-serve`: this server against MLServer, the same bounded load, side by side in one run.

    python -m benchmarks.serve --artifacts DIR --mlserver PATH-TO-mlserver

Both serve the same linear regression: ours the float ONNX model (`float`), MLServer its
scikit-learn runtime (mlserver-sklearn) on `model.joblib`, the model the float ONNX was
converted from. Each mode is 1-row or 1000-row requests, JSON or Triton's binary extension, at
concurrency 1 or 8: a fixed number of requests from keep-alive connections on 127.0.0.1. Every
answer must be a 200 whose predictions match the float model's (else the mode is reported as
failing). Requests per second, p50 and p99 latency come from one run; the servers are measured
one after the other on the same machine, with the same client.

Benchmark only: MLServer lives in its own venv (requirements-serve-bench.txt), never in .venv
or the image. Prints a table; asserts nothing.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from benchmarks import measured
from housing_runtime.errors import UserError, run_cli
from pipeline import config

READY_SECONDS = 120
# Requests per mode: bounded, a few seconds each on this machine.
REQUESTS = {1: 3000, 1000: 400}
CONCURRENCY = (1, 8)
TOLERANCE = 1e-4  # float32 ONNX against float64 scikit-learn, per prediction


@dataclass(frozen=True)
class Mode:
    rows: int
    binary: bool
    concurrency: int

    @property
    def name(self) -> str:
        return (
            f"{self.rows} row{'s' if self.rows > 1 else ''}, {'binary' if self.binary else 'JSON'}, "
            f"concurrency {self.concurrency}"
        )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def infer_request(X: np.ndarray, binary: bool, output: str) -> tuple[bytes, dict]:
    tensor = {"name": "input", "datatype": "FP32", "shape": list(X.shape)}
    if not binary:
        body = {"inputs": [{**tensor, "data": X.ravel().tolist()}], "outputs": [{"name": output}]}
        return json.dumps(body).encode(), {"Content-Type": "application/json"}
    raw = X.astype("<f4").tobytes()
    header = json.dumps(
        {
            "inputs": [{**tensor, "parameters": {"binary_data_size": len(raw)}}],
            "outputs": [{"name": output, "parameters": {"binary_data": True}}],
        }
    ).encode()
    return header + raw, {
        "Inference-Header-Content-Length": str(len(header)),
        "Content-Type": "application/octet-stream",
    }


def predictions(response: http.client.HTTPResponse, raw: bytes) -> np.ndarray:
    length = response.getheader("Inference-Header-Content-Length")
    if length is None:
        return np.array(json.loads(raw)["outputs"][0]["data"], np.float64).reshape(-1)
    header = json.loads(raw[: int(length)])
    dtype = {"FP32": "<f4", "FP64": "<f8"}[header["outputs"][0]["datatype"]]
    return np.frombuffer(raw[int(length) :], dtype).astype(np.float64)


def drive(port: int, path: str, body: bytes, headers: dict, n: int, concurrency: int, expected: np.ndarray) -> dict:
    """n requests from ``concurrency`` keep-alive connections; every answer is checked."""
    latencies: list[float] = []
    failures: list[str] = []
    lock = threading.Lock()

    def worker(count: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        mine = []
        for i in range(count):
            start = time.perf_counter()
            conn.request("POST", path, body, headers)
            response = conn.getresponse()
            raw = response.read()
            mine.append(time.perf_counter() - start)
            if response.status != 200:
                with lock:
                    failures.append(f"HTTP {response.status}: {raw[:200]!r}")
                return
            if i == 0:
                got = predictions(response, raw)
                if got.shape != expected.shape or np.max(np.abs(got - expected)) > TOLERANCE:
                    with lock:
                        failures.append("predictions differ from the model's")
                    return
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=worker, args=(n // concurrency,)) for _ in range(concurrency)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    if failures:
        return {"ok": False, "error": failures[0]}
    latencies.sort()
    return {
        "ok": True,
        "rps": len(latencies) / elapsed,
        "p50_ms": latencies[len(latencies) // 2] * 1e3,
        "p99_ms": latencies[int(len(latencies) * 0.99)] * 1e3,
    }


def wait_ready(port: int, process: subprocess.Popen | None, name: str, seconds: float = READY_SECONDS) -> None:
    """Until GET /v2/health/ready on 127.0.0.1:port answers 200 (``process``, if given, must
    stay alive meanwhile). Also what the server tests wait with."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise UserError(f"{name} exited with {process.returncode} before it was ready")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/v2/health/ready")
            if conn.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise UserError(f"{name} was not ready within {seconds:g} s")


def serve_command(artifacts: Path, port: int, *extra: str, exe: list[str] | None = None) -> list[str]:
    """`housing-runtime serve` on 127.0.0.1:port (``exe``: the command; this Python's by default).
    Also what the server tests start."""
    exe = exe or [sys.executable, "-m", "housing_runtime"]
    return [*exe, "serve", "--host", "127.0.0.1", "--port", str(port), "--artifacts", str(artifacts), *extra]


def start_ours(artifacts: Path, port: int) -> subprocess.Popen:
    return subprocess.Popen(
        serve_command(artifacts, port, "--no-access-log"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def start_mlserver(mlserver: str, artifacts: Path, folder: Path, port: int) -> subprocess.Popen:
    """MLServer's scikit-learn runtime on model.joblib, its logs quiet, no gRPC or metrics port
    in the way."""
    model_dir = folder / "float"
    model_dir.mkdir(parents=True)
    (model_dir / "model.joblib").write_bytes((artifacts / config.ARTIFACT_NAMES["model"]).read_bytes())
    (model_dir / "model-settings.json").write_text(
        json.dumps(
            {
                "name": "float",
                "implementation": "mlserver_sklearn.SKLearnModel",
                "parameters": {"uri": "./model.joblib", "version": "1"},
            }
        )
    )
    (folder / "settings.json").write_text(
        json.dumps(
            {
                "http_port": port,
                "grpc_port": free_port(),
                "metrics_port": free_port(),
                "host": "127.0.0.1",
                "parallel_workers": 0,
                "debug": False,
            }
        )
    )
    env = {**os.environ, "MLSERVER_LOGGING_LEVEL": "WARNING"}
    return subprocess.Popen(
        [mlserver, "start", str(folder)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env
    )


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def bench(artifacts: Path, mlserver: str) -> list[dict]:
    rng = np.random.default_rng(0)
    session = ort.InferenceSession(str(artifacts / config.ONNX_NAMES["float"]), providers=["CPUExecutionProvider"])
    batches = {
        n: (
            np.abs(rng.normal(size=(n, 8))) * [2, 12, 2, 0.4, 1100, 10, 2, 2] + [4, 28, 5, 1, 1400, 3, 35, -120]
        ).astype(np.float32)
        for n in REQUESTS
    }
    expected = {n: session.run(None, {"input": X})[0].reshape(-1).astype(np.float64) for n, X in batches.items()}
    modes = [Mode(rows, binary, c) for rows in REQUESTS for binary in (False, True) for c in CONCURRENCY]
    servers = {"this server (float ONNX)": ("variable", None), "MLServer 1.7 (scikit-learn)": ("predict", mlserver)}
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, (output, command) in servers.items():
            port = free_port()
            process = (
                start_ours(artifacts, port)
                if command is None
                else start_mlserver(command, artifacts, Path(tmp) / "mlserver", port)
            )
            try:
                wait_ready(port, process, name)
                for mode in modes:
                    body, headers = infer_request(batches[mode.rows], mode.binary, output)
                    run = drive(
                        port,
                        "/v2/models/float/infer",
                        body,
                        headers,
                        REQUESTS[mode.rows],
                        mode.concurrency,
                        expected[mode.rows],
                    )
                    results.append({"server": name, "mode": mode.name, **run})
            finally:
                stop(process)
    return results


def serve_markdown(results: list[dict]) -> str:
    """The table `make bench-serve` prints and writes (MEASURED/bench-serve.md)."""
    lines = [
        "| mode | server | requests/s | p50 ms | p99 ms | requests/s vs MLServer |",
        "|---|---|---:|---:|---:|---:|",
    ]
    by_mode: dict[str, dict[str, dict]] = {}
    for r in results:
        by_mode.setdefault(r["mode"], {})[r["server"]] = r
    for mode, runs in by_mode.items():
        theirs = next((r for s, r in runs.items() if s.startswith("MLServer")), None)
        for server, r in runs.items():
            if not r["ok"]:
                error = r["error"][:80].replace("|", "\\|")
                lines.append(f"| {mode} | {server} | fails: {error} | | | |")
                continue
            ratio = f"{r['rps'] / theirs['rps']:.2f}x" if theirs and theirs["ok"] else "—"
            lines.append(f"| {mode} | {server} | {r['rps']:.0f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {ratio} |")
    requests = ", ".join(f"{n:,} of {rows:,} row{'s' if rows > 1 else ''}" for rows, n in REQUESTS.items())
    lines += [
        "",
        f"Requests per mode: {requests}, from keep-alive connections on 127.0.0.1; client and servers share the "
        "machine's cores. A failing mode names the first bad answer.",
    ]
    return "\n".join(lines) + "\n"


def mlserver_version(mlserver: str) -> str:
    python = Path(mlserver).parent / "python"
    out = subprocess.run(
        [str(python), "-c", "import mlserver; print(mlserver.__version__)"], capture_output=True, text=True
    )
    return out.stdout.strip() or "unknown"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="benchmarks.serve", description=__doc__.splitlines()[0])
    parser.add_argument("--artifacts", type=Path, default=config.artifacts_dir(), help="the models' folder")
    parser.add_argument("--mlserver", required=True, help="the mlserver command (requirements-serve-bench.txt)")
    parser.add_argument(
        "--measured", type=Path, help="also write the table here, as bench-serve.md and bench-serve.json"
    )
    args = parser.parse_args(argv)
    results = bench(args.artifacts, args.mlserver)
    body = serve_markdown(results)
    print(body)
    print(json.dumps({"machine": os.uname().machine, "cpus": os.cpu_count()}))
    if args.measured is not None:
        prov = measured.provenance("make bench-serve", {"mlserver": mlserver_version(args.mlserver)})
        measured.write(args.measured, "bench-serve", body, {"requests": REQUESTS, "results": results}, prov)
    return 0


if __name__ == "__main__":
    run_cli(main, "benchmarks.serve")
