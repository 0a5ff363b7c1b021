"""`make bench-serve`: this server against MLServer, the same bounded load, side by side in one run.

    python -m benchmarks.serve --artifacts DIR --mlserver PATH-TO-mlserver [--measured DIR]

Both serve the same linear regression: ours the float ONNX model (`float`), MLServer its
scikit-learn runtime (mlserver-sklearn) on `model.joblib`, the model the float ONNX was
converted from. Both run at once, each with its HTTP and its gRPC port; the modes are measured
one by one, each on one server then the other (the order alternating), with the same client
(benchmarks/serve_clients.py). A mode is a protocol (REST JSON, REST with Triton's binary tensor
extension, gRPC with typed `contents`, gRPC with `raw_input_contents`), 1-row or 1000-row
requests, at concurrency 1 or 8: a fixed number of requests from keep-alive connections on
127.0.0.1. Every answer must be a success whose predictions match the float model's (else the
mode is reported as failing, with each reason and its count); a server with no gRPC port that
answers has its gRPC modes reported as not served. Requests per second, p50 and p99 latency
come from one run.

The goal, checked and printed, not asserted: wherever MLServer answers correctly, this server
serves at least GOAL_RATIO times its requests per second with a p99 latency no higher.

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
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from benchmarks import measured
from benchmarks.serve_clients import PROTOCOLS, WARMUP, Mode, connector, drive, grpc_ready
from housing_runtime.errors import UserError, run_cli
from pipeline import config

READY_SECONDS = 120
# After a server answers HTTP: how long its gRPC port may take to answer ServerReady.
GRPC_READY_SECONDS = 10
# Requests per mode and server, by rows per request: enough for a p99 (the 20th slowest of 2,000),
# few enough that the whole run takes about 3 minutes on 2 cores.
REQUESTS = {1: 8000, 1000: 2000}
CONCURRENCY = (1, 8)
GOAL_RATIO = 1.5  # this server's requests/s over MLServer's, p99 no higher
OURS, THEIRS = "this server (float ONNX)", "MLServer 1.7 (scikit-learn)"


@dataclass
class Server:
    name: str
    output: str  # the model's output tensor's name
    http_port: int
    grpc_port: int
    process: subprocess.Popen
    log: Path  # its stderr
    no_grpc: str | None = None  # why its gRPC modes are not served


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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
    Also what the server tests start; without ``--grpc-port`` in ``extra``, gRPC is off."""
    exe = exe or [sys.executable, "-m", "housing_runtime"]
    # No gRPC unless asked for: servers started side by side must not all take its default port.
    grpc = [] if "--grpc-port" in extra else ["--grpc-port", "0"]
    return [*exe, "serve", "--host", "127.0.0.1", "--port", str(port), "--artifacts", str(artifacts), *grpc, *extra]


def start_ours(artifacts: Path, log: Path, port: int, grpc_port: int) -> Server:
    with log.open("wb") as stderr:
        command = serve_command(artifacts, port, "--no-access-log", "--grpc-port", str(grpc_port))
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=stderr)
    return Server(OURS, "variable", port, grpc_port, process, log)


def start_mlserver(mlserver: str, artifacts: Path, folder: Path, log: Path, port: int, grpc_port: int) -> Server:
    """MLServer's scikit-learn runtime on model.joblib, its logs quiet, its gRPC on ``grpc_port``
    and its metrics on a free port."""
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
                "grpc_port": grpc_port,
                "metrics_port": free_port(),
                "host": "127.0.0.1",
                "parallel_workers": 0,
                "debug": False,
            }
        )
    )
    env = {**os.environ, "MLSERVER_LOGGING_LEVEL": "WARNING"}
    with log.open("wb") as stderr:
        process = subprocess.Popen([mlserver, "start", str(folder)], stdout=subprocess.DEVNULL, stderr=stderr, env=env)
    return Server(THEIRS, "predict", port, grpc_port, process, log)


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def modes() -> list[Mode]:
    return [Mode(protocol, rows, c) for protocol in PROTOCOLS for rows in REQUESTS for c in CONCURRENCY]


def measure(mode: Mode, server: Server, X: np.ndarray, expected: np.ndarray) -> dict:
    if mode.grpc and server.no_grpc:
        return {"ok": False, "served": False, "requests": 0, "errors": 0, "error": server.no_grpc}
    port = server.grpc_port if mode.grpc else server.http_port
    connect = connector(mode, port, "float", server.output, X)
    return {"served": True, **drive(connect, mode.grpc, REQUESTS[mode.rows], mode.concurrency, expected)}


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
    results = []
    servers: list[Server] = []
    with tempfile.TemporaryDirectory() as tmp:
        try:
            logs = Path(tmp)
            servers.append(start_ours(artifacts, logs / "ours.log", free_port(), free_port()))
            mlserver_dir = logs / "mlserver"
            servers.append(
                start_mlserver(mlserver, artifacts, mlserver_dir, logs / "mlserver.log", free_port(), free_port())
            )
            for server in servers:
                try:
                    wait_ready(server.http_port, server.process, server.name)
                except UserError as error:
                    last = (server.log.read_text(errors="replace").strip().splitlines() or ["(empty)"])[-1]
                    raise UserError(f"{error}; the last line it wrote: {last}") from None
                if not server.no_grpc and not grpc_ready(server.grpc_port, GRPC_READY_SECONDS):
                    server.no_grpc = f"not served: no gRPC answer on 127.0.0.1:{server.grpc_port}"
            for i, mode in enumerate(modes()):
                runs = {}
                for server in servers if i % 2 == 0 else servers[::-1]:  # neither always first
                    runs[server.name] = measure(mode, server, batches[mode.rows], expected[mode.rows])
                results += [{"server": s.name, "mode": mode.name, **vars(mode), **runs[s.name]} for s in servers]
        finally:
            for server in servers:
                stop(server.process)
    return results


def goals(results: list[dict]) -> list[dict]:
    """Per mode: this server's requests/s and p99 over MLServer's, and whether the goal is met
    (None where MLServer does not answer correctly: no goal)."""
    by_mode: dict[str, dict[str, dict]] = {}
    for r in results:
        by_mode.setdefault(r["mode"], {})[r["server"]] = r
    out = []
    for mode, runs in by_mode.items():
        ours, theirs = runs[OURS], runs[THEIRS]
        goal: dict = {"mode": mode, "met": None, "rps_ratio": None, "p99_ratio": None}
        if not theirs["ok"]:
            goal["note"] = f"no goal: MLServer fails ({theirs['error'][:160]})"
        elif not ours["ok"]:
            goal |= {"met": False, "note": ours["error"][:160]}
        else:
            rps, p99 = ours["rps"] / theirs["rps"], ours["p99_ms"] / theirs["p99_ms"]
            goal |= {"met": rps >= GOAL_RATIO and p99 <= 1, "rps_ratio": rps, "p99_ratio": p99}
            goal["note"] = f"{rps:.2f}x requests/s, p99 {p99:.2f}x"
        out.append(goal)
    return out


def goal_report(checked: list[dict]) -> str:
    """The goal check `make bench-serve` prints."""
    lines = [f"Goal: this server >= {GOAL_RATIO:g}x MLServer's requests/s, p99 no higher, where MLServer is right:"]
    for g in checked:
        mark = "-" if g["met"] is None else "met" if g["met"] else "SHORT"
        lines.append(f"  {mark:5}  {g['mode']}: {g['note']}")
    short = sum(g["met"] is False for g in checked)
    lines.append(f"{short} of {sum(g['met'] is not None for g in checked)} modes short of the goal.")
    return "\n".join(lines)


def serve_markdown(results: list[dict]) -> str:
    """The table `make bench-serve` prints and writes (MEASURED/bench-serve.md), with each mode's
    ratios and goal check."""
    lines = [
        "| mode | server | requests/s | p50 ms | p99 ms | errors | requests/s vs MLServer | p99 vs MLServer | goal |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    goal_of = {g["mode"]: g for g in goals(results)}
    for r in results:
        g = goal_of[r["mode"]]
        errors = f"{r['errors']:,} of {r['requests']:,}" if r["served"] else "—"
        ratios = " | | "
        if r["server"] == OURS:
            mark = "—" if g["met"] is None else "met" if g["met"] else "**short**"
            rps, p99 = (f"{g[k]:.2f}x" if g[k] is not None else "—" for k in ("rps_ratio", "p99_ratio"))
            ratios = f"{rps} | {p99} | {mark}"
        if not r["ok"]:
            what = "fails: " if r["served"] else ""
            error = r["error"][:160].replace("|", "\\|")
            lines.append(f"| {r['mode']} | {r['server']} | {what}{error} | | | {errors} | {ratios} |")
            continue
        times = f"{r['rps']:.0f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f}"
        lines.append(f"| {r['mode']} | {r['server']} | {times} | {errors} | {ratios} |")
    requests = ", ".join(f"{n:,} of {rows:,} row{'s' if rows > 1 else ''}" for rows, n in REQUESTS.items())
    lines += [
        "",
        f"Requests per mode and server: {requests}, after {WARMUP} untimed ones per connection, from keep-alive "
        "connections on 127.0.0.1 (one per concurrent client); client and servers share the machine's cores. "
        "A failing mode names its bad answers, the most frequent first. Goal: this server at least "
        f"{GOAL_RATIO:g}x MLServer's requests/s with a p99 no higher, in every mode MLServer answers correctly.",
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
    checked = goals(results)
    body = serve_markdown(results)
    print(body)
    print(goal_report(checked))
    print(json.dumps({"machine": os.uname().machine, "cpus": os.cpu_count()}))
    if args.measured is not None:
        prov = measured.provenance("make bench-serve", {"mlserver": mlserver_version(args.mlserver)})
        data = {"requests": REQUESTS, "warmup": WARMUP, "goal_ratio": GOAL_RATIO, "results": results, "goals": checked}
        measured.write(args.measured, "bench-serve", body, data, prov)
    return 0


if __name__ == "__main__":
    run_cli(main, "benchmarks.serve")
