"""The load of `make bench-serve` (benchmarks/serve.py): the same V2 inference request, sent over
REST (JSON, or Triton's binary tensor extension) or gRPC (`contents.fp32_contents`, or
`raw_input_contents`), from keep-alive connections on 127.0.0.1, every answer checked.

One connection per concurrent worker (threads): an `http.client` connection, or a gRPC channel
with a subchannel pool of its own (channels to the same address otherwise share one HTTP/2
connection). Each request is built and serialized once, outside the timed loop; each worker
sends WARMUP untimed requests, then all start the timed loop together. Answers are kept as they
arrive and checked after the clock stops, so that checking costs the servers no CPU.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import grpc  # type: ignore[import-untyped, unused-ignore]  # grpcio ships no types
import numpy as np

from housing_runtime.serving.proto import grpc_predict_v2_pb2 as pb
from housing_runtime.serving.proto import grpc_predict_v2_pb2_grpc as pb_grpc

PROTOCOLS = ("REST JSON", "REST binary", "gRPC typed", "gRPC raw")
WARMUP = 20  # untimed requests per connection before the clock starts
TIMEOUT = 60.0  # seconds, per request
TOLERANCE = 1e-4  # float32 ONNX against float64 scikit-learn, per prediction
# Tensor datatypes an answer may come in, as little-endian numpy dtypes.
DTYPES = {"FP32": "<f4", "FP64": "<f8"}
# Each connection its own: gRPC shares one HTTP/2 connection between channels with the same arguments.
GRPC_OPTIONS = [("grpc.use_local_subchannel_pool", 1), ("grpc.max_receive_message_length", -1)]


@dataclass(frozen=True)
class Mode:
    protocol: str  # one of PROTOCOLS
    rows: int
    concurrency: int

    @property
    def grpc(self) -> bool:
        return self.protocol.startswith("gRPC")

    @property
    def name(self) -> str:
        return f"{self.protocol}, {self.rows:,} row{'s' if self.rows > 1 else ''}, concurrency {self.concurrency}"


# An answer as it arrived (REST: status, binary header length, body; gRPC: the response or the
# error), kept for the check after the timed loop.
Answer = Any
Connect = Callable[[], tuple[Callable[[], Answer], Callable[[], None]]]


# ---- REST ------------------------------------------------------------------------------------


def rest_request(X: np.ndarray, binary: bool, output: str) -> tuple[bytes, dict[str, str]]:
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


def rest_connect(port: int, model: str, body: bytes, headers: dict[str, str]) -> Connect:
    def connect() -> tuple[Callable[[], Answer], Callable[[], None]]:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT)

        def send() -> Answer:
            try:
                conn.request("POST", f"/v2/models/{model}/infer", body, headers)
                response = conn.getresponse()
                return response.status, response.getheader("Inference-Header-Content-Length"), response.read()
            except (OSError, http.client.HTTPException):
                conn.close()  # the next request opens a new connection
                raise

        return send, conn.close

    return connect


def rest_predictions(answer: Answer) -> np.ndarray:
    status, length, raw = answer
    if status != 200:
        raise ValueError(f"HTTP {status}: {raw[:200]!r}")
    if length is None:
        return np.array(json.loads(raw)["outputs"][0]["data"], np.float64)
    header = json.loads(raw[: int(length)])
    return np.frombuffer(raw[int(length) :], DTYPES[header["outputs"][0]["datatype"]]).astype(np.float64)


# ---- gRPC ------------------------------------------------------------------------------------


def grpc_request(X: np.ndarray, raw: bool, output: str, model: str) -> pb.ModelInferRequest:
    request = pb.ModelInferRequest(model_name=model)
    tensor = request.inputs.add(name="input", datatype="FP32", shape=list(X.shape))
    if raw:
        request.raw_input_contents.append(X.astype("<f4").tobytes())
    else:
        tensor.contents.fp32_contents.extend(X.ravel().tolist())
    request.outputs.add(name=output)
    return request


def grpc_connect(port: int, request: pb.ModelInferRequest) -> Connect:
    def connect() -> tuple[Callable[[], Answer], Callable[[], None]]:
        channel = grpc.insecure_channel(f"127.0.0.1:{port}", options=GRPC_OPTIONS)
        infer = pb_grpc.GRPCInferenceServiceStub(channel).ModelInfer

        def send() -> Answer:
            try:
                return infer(request, timeout=TIMEOUT)
            except grpc.RpcError as error:  # kept as the answer: an error is a bad answer, not a crash
                return error

        return send, channel.close

    return connect


def grpc_predictions(answer: Answer) -> np.ndarray:
    if isinstance(answer, grpc.RpcError):
        # A failed unary call's error is also its grpc.Call, with the status code and details.
        code, details = (answer.code(), answer.details()) if isinstance(answer, grpc.Call) else (None, str(answer))
        raise ValueError(f"gRPC {code.name if code else 'error'}: {(details or '')[:200]}")
    if not answer.outputs:
        raise ValueError("gRPC answer has no outputs")
    output = answer.outputs[0]
    if output.datatype not in DTYPES:
        raise ValueError(f"gRPC answer's datatype is {output.datatype!r}")
    if answer.raw_output_contents:
        return np.frombuffer(answer.raw_output_contents[0], DTYPES[output.datatype]).astype(np.float64)
    contents = output.contents.fp32_contents if output.datatype == "FP32" else output.contents.fp64_contents
    return np.array(contents, np.float64)


def grpc_ready(port: int, seconds: float) -> bool:
    """Whether ServerReady on 127.0.0.1:port answers true within ``seconds``."""
    deadline = time.monotonic() + seconds
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        while time.monotonic() < deadline:
            try:
                if stub.ServerReady(pb.ServerReadyRequest(), timeout=2).ready:
                    return True
            except grpc.RpcError:
                pass
            time.sleep(0.2)
    return False


# ---- The load --------------------------------------------------------------------------------


def connector(mode: Mode, port: int, model: str, output: str, X: np.ndarray) -> Connect:
    """How each worker connects and sends ``mode``'s request, built here once."""
    if mode.grpc:
        return grpc_connect(port, grpc_request(X, mode.protocol == "gRPC raw", output, model))
    body, headers = rest_request(X, mode.protocol == "REST binary", output)
    return rest_connect(port, model, body, headers)


def check(answer: Answer, grpc_answer: bool, expected: np.ndarray) -> str | None:
    """Why ``answer`` is wrong, or None."""
    if isinstance(answer, Exception) and not isinstance(answer, grpc.RpcError):
        return f"{type(answer).__name__}: {answer}"
    try:
        got = grpc_predictions(answer) if grpc_answer else rest_predictions(answer)
    except (ValueError, KeyError, IndexError, TypeError) as error:
        return str(error) if isinstance(error, ValueError) else f"malformed answer ({type(error).__name__}: {error})"
    if got.shape != expected.shape:
        return f"{got.size} predictions for {expected.size} rows"
    if np.max(np.abs(got - expected)) > TOLERANCE:
        return f"predictions differ from the model's by up to {np.max(np.abs(got - expected)):.3g}"
    return None


def drive(connect: Connect, grpc_answer: bool, n: int, concurrency: int, expected: np.ndarray) -> dict:
    """n requests from ``concurrency`` connections, timed together after each's warm-up; then
    every answer checked. ``errors`` counts the bad answers; ``error`` names each reason, with
    its count, the most frequent first."""
    per_worker = n // concurrency
    start_line = threading.Barrier(concurrency + 1)
    timed: list[tuple[list[float], list[Answer]]] = []
    lock = threading.Lock()

    def worker(send: Callable[[], Answer], close: Callable[[], None]) -> None:
        latencies: list[float] = []
        answers: list[Answer] = []
        for _ in range(WARMUP):
            with contextlib.suppress(Exception):  # a bad answer counts when timed
                send()
        start_line.wait()
        for _ in range(per_worker):
            start = time.perf_counter()
            try:
                answer = send()
            except Exception as error:  # kept as the answer: checked with the others
                answer = error
            latencies.append(time.perf_counter() - start)
            answers.append(answer)
        close()
        with lock:
            timed.append((latencies, answers))

    # Both kinds of connection open at their first request, in the worker.
    threads = [threading.Thread(target=worker, args=connect()) for _ in range(concurrency)]
    for t in threads:
        t.start()
    start_line.wait()
    start = time.perf_counter()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start

    latencies = sorted(x for mine, _ in timed for x in mine)
    reasons = Counter(r for _, answers in timed for r in (check(a, grpc_answer, expected) for a in answers) if r)
    errors = sum(reasons.values())
    result: dict[str, Any] = {"requests": per_worker * concurrency, "errors": errors, "ok": not errors}
    if errors:
        result["error"] = "; ".join(f"{reason} ({count:,})" for reason, count in reasons.most_common())
    if latencies:
        result |= {
            "rps": len(latencies) / elapsed,
            "p50_ms": latencies[len(latencies) // 2] * 1e3,
            "p99_ms": latencies[int(len(latencies) * 0.99)] * 1e3,
        }
    return result
