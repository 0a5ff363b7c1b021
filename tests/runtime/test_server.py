"""The inference server (`python -m housing_runtime serve`) against clients nobody here wrote.

NVIDIA's tritonclient drives the KServe V2 conformance: health, metadata, readiness, and
infer in all four binary/JSON combinations, for 1 and 1000 rows, with predictions equal to a
default onnxruntime session's on the model file. Raw HTTP covers every error status: each is
a 4xx with one JSON line, never a traceback. The server runs as a real process on 127.0.0.1
with a free port; every test sends a bounded number of requests.
"""

from __future__ import annotations

import gzip
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.http as triton

import helpers
from helpers import california_like_rows, write_synthetic_artifacts
from housing_runtime.errors import UserError
from pipeline import config
from server_checks import (
    BAD_REQUESTS,
    INFER_MODES,
    ROW,
    check_bad_request,
    check_health_and_metadata,
    check_infer,
    free_port,
    infer_body,
    request,
    serve_command,
    wait_ready,
)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
READY_WITHIN_SECONDS = 60


def start_server(art, *args: str) -> tuple[subprocess.Popen, int]:
    port = free_port()
    process = subprocess.Popen(
        serve_command(art, port, *args),
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        wait_ready(port, process, "the server", READY_WITHIN_SECONDS)
    except UserError as err:
        stderr = process.stderr.read().decode() if process.poll() is not None else ""
        raise AssertionError(f"{err}: {stderr}") from None
    return process, port


def stop(process: subprocess.Popen) -> int:
    process.send_signal(signal.SIGTERM)
    return process.wait(timeout=20)


@pytest.fixture(scope="module")
def art(tmp_path_factory):
    return write_synthetic_artifacts(tmp_path_factory.mktemp("serve") / "artifacts")


@pytest.fixture(scope="module")
def server(art):
    process, port = start_server(art, "--max-rows", "5000", "--workers", "2")  # two large-body slots
    yield port
    stop(process)


@pytest.fixture(scope="module")
def client(server):
    return triton.InferenceServerClient(f"127.0.0.1:{server}")


def reference(art, variant: str, X: np.ndarray) -> np.ndarray:
    """A default onnxruntime session on the model file: what users would get themselves."""
    sess = ort.InferenceSession(str(art / config.ONNX_NAMES[variant]), providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: X})[0].reshape(-1)


# ---- tritonclient: the conformance a deployment relies on -----------------------------------


def test_tritonclient_sees_health_readiness_and_metadata(client):
    check_health_and_metadata(client)


@pytest.mark.parametrize("rows,binary_in,binary_out", INFER_MODES)
def test_tritonclient_infer_equals_onnxruntime_in_every_binary_json_combination(
    client, art, rows, binary_in, binary_out
):
    check_infer(client, lambda model, X: reference(art, model, X), rows, binary_in, binary_out)


def test_tritonclient_default_infer_gets_binary_outputs(client, art):
    """tritonclient names no outputs by default, asking for all of them in binary."""
    X = california_like_rows(3, seed=3).astype(np.float32)
    tensor = triton.InferInput("input", list(X.shape), "FP32")
    tensor.set_data_from_numpy(X)
    result = client.infer("uint8", [tensor])
    np.testing.assert_array_equal(result.as_numpy("variable").reshape(-1), reference(art, "uint8", X))


# ---- plain HTTP: the forms a curl user sends -------------------------------------------------


def test_nested_data_and_the_versioned_path_predict_the_same(server, art):
    X = np.array([ROW, ROW[::-1]], np.float32)
    flat = infer_body(X.ravel().tolist(), [2, 8])
    nested = infer_body(X.tolist(), [2, 8])
    for body, path in ((flat, "/v2/models/float/infer"), (nested, "/v2/models/float/versions/1/infer")):
        status, ctype, raw, _ = request(server, "POST", path, body)
        assert status == 200 and ctype.startswith("application/json")
        data = json.loads(raw)["outputs"][0]["data"]
        np.testing.assert_array_equal(np.array(data, np.float32), reference(art, "float", X))


def test_v1_predict_takes_the_clis_records_in_any_key_order(server, art):
    X = california_like_rows(4, seed=9).astype(np.float32)
    names = list(config.FEATURE_NAMES)
    instances = [dict(reversed(list(zip(names, map(float, row), strict=True)))) for row in X]
    body = json.dumps({"instances": instances}).encode()
    status, _, raw, _ = request(server, "POST", "/v1/models/dequant:predict", body)
    assert status == 200
    np.testing.assert_array_equal(np.array(json.loads(raw)["predictions"], np.float32), reference(art, "dequant", X))


def test_a_gzip_body_is_accepted(server):
    status, _, _, _ = request(
        server, "POST", "/v2/models/uint8/infer", gzip.compress(infer_body(ROW)), {"Content-Encoding": "gzip"}
    )
    assert status == 200


def test_metrics_count_requests_rows_and_latency(server):
    request(server, "POST", "/v2/models/uint8/infer", infer_body(ROW * 2, [2, 8]))
    request(server, "GET", "/v2/models/nope")
    status, ctype, raw, _ = request(server, "GET", "/metrics")
    text = raw.decode()
    assert status == 200 and ctype.startswith("text/plain")
    assert 'housing_requests_total{code="200",model="uint8",protocol="http"}' in text
    assert 'housing_requests_total{code="404",model="unknown",protocol="http"}' in text
    assert 'housing_rows_predicted_total{model="uint8"}' in text
    assert 'housing_request_duration_seconds_bucket{le="0.005",model="uint8",protocol="http"}' in text


# ---- every bad request: a 4xx, one JSON line, no traceback ----------------------------------


@pytest.mark.parametrize(
    "status,method,path,body,headers,words", BAD_REQUESTS, ids=[f"{r[0]}-{r[5]}" for r in BAD_REQUESTS]
)
def test_every_bad_request_is_a_4xx_with_one_json_line(server, status, method, path, body, headers, words):
    check_bad_request(server, status, method, path, body, headers, words)


def test_the_same_bad_value_gets_the_same_words_as_the_cli(server, art, tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text(",".join(config.FEATURE_NAMES) + "\n" + ",".join(["1e39"] + ["1"] * 7) + "\n")
    cli = subprocess.run(
        [sys.executable, "-m", "housing_runtime", "--artifacts", str(art), "--input", str(bad)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    _, _, raw, _ = request(server, "POST", "/v2/models/uint8/infer", infer_body([1e39] + [1.0] * 7))
    cli_words = cli.stderr.strip().split("column 'MedInc': ", 1)[1]
    server_words = json.loads(raw)["error"].split("column 'MedInc': ", 1)[1]
    assert cli_words == server_words


def test_made_up_model_names_share_one_metric_label(server):
    for i in range(3):
        request(server, "GET", f"/v2/models/made-up-{i}/ready")
    text = request(server, "GET", "/metrics")[2].decode()
    assert "made-up" not in text and 'housing_requests_total{code="404",model="unknown",protocol="http"}' in text


def test_head_and_absolute_form_targets_are_answered(server):
    status, _, raw, _ = request(server, "HEAD", "/v2/health/ready")
    assert status == 200 and raw == b""
    assert request(server, "GET", f"http://127.0.0.1:{server}/v2/health/live")[0] == 200


# ---- operations -------------------------------------------------------------------------------


def test_sigterm_answers_in_flight_requests_and_exits_promptly(art):
    process, port = start_server(art, "--no-access-log")
    body = infer_body(california_like_rows(1000, seed=1).ravel().tolist(), [1000, 8])
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("POST", "/v2/models/uint8/infer", body=body)
    process.send_signal(signal.SIGTERM)
    started = time.monotonic()
    assert conn.getresponse().status == 200
    assert process.wait(timeout=20) == 0
    assert time.monotonic() - started < 10


@pytest.fixture(scope="module")
def strict_server(art):
    """A server with short timeouts and few connection slots, for the slow-client tests."""
    process, port = start_server(
        art, "--max-concurrency", "4", "--header-timeout", "1", "--read-timeout", "1", "--no-access-log"
    )
    yield port
    stop(process)


def test_idle_connections_cannot_lock_the_server_out(strict_server):
    """Sockets that never send a request are closed after the header timeout, so they cannot
    hold the bounded connection slots (uvicorn alone would wait for them forever)."""
    idle = [socket.create_connection(("127.0.0.1", strict_server)) for _ in range(4)]
    try:
        time.sleep(2)
        assert request(strict_server, "GET", "/v2/health/live")[0] == 200
        assert all(s.recv(1) == b"" for s in idle)  # closed by the server
    finally:
        for s in idle:
            s.close()


def test_a_body_that_does_not_arrive_in_time_is_a_408(strict_server):
    body = infer_body(ROW)
    with socket.create_connection(("127.0.0.1", strict_server)) as conn:
        conn.sendall(
            b"POST /v2/models/uint8/infer HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body) + body[:10]
        )
        conn.settimeout(10)
        reply = conn.recv(65536)
    assert reply.startswith(b"HTTP/1.1 408") and b"application/json" in reply


def test_readiness_is_false_until_the_models_are_loaded_and_once_shutdown_begins(art):
    """Adapter-level: what loading and the server's shutdown flag do to readiness (the loading
    takes a fraction of a second, too short to catch over HTTP reliably)."""
    from housing_runtime.model import Predictor
    from housing_runtime.serving.messages import Model
    from housing_runtime.serving.rest import RestAdapter

    protocol = RestAdapter()
    assert protocol.handle("GET", "/v2/health/ready", {}, b"").status == 503
    loading = protocol.handle("POST", "/v2/models/uint8/infer", {}, infer_body(ROW))
    assert loading.status == 503 and b"still loading" in loading.body
    assert protocol.handle("GET", "/v2/health/live", {}, b"").status == 200
    protocol.load({"uint8": Model("uint8", Predictor(art / config.ONNX_NAMES["uint8"]))})
    assert protocol.handle("GET", "/v2/health/ready", {}, b"").status == 200
    protocol.stopping = True
    assert protocol.handle("GET", "/v2/health/ready", {}, b"").status == 503
    assert protocol.handle("GET", "/v2/models/uint8/ready", {}, b"").status == 503
    assert protocol.handle("GET", "/v2/health/live", {}, b"").status == 200


def test_a_body_still_arriving_at_sigterm_gets_a_503_and_the_server_exits_in_time(art):
    process, port = start_server(art, "--no-access-log")
    conn = socket.create_connection(("127.0.0.1", port))
    body = infer_body(ROW)
    conn.sendall(
        b"POST /v2/models/uint8/infer HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body) + body[:10]
    )
    time.sleep(0.3)
    process.send_signal(signal.SIGTERM)
    started = time.monotonic()
    conn.settimeout(15)
    reply = b""
    while chunk := conn.recv(65536):  # until the server closes the connection
        reply += chunk
    conn.close()
    assert reply.startswith(b"HTTP/1.1 503") and b'"error"' in reply and b"shutting down" in reply
    assert process.wait(timeout=20) == 0
    assert time.monotonic() - started < 10


def test_a_bad_artifact_stops_the_server_with_one_line(tmp_path):
    art = write_synthetic_artifacts(tmp_path / "artifacts")
    (art / config.ONNX_NAMES["float"]).write_bytes(b"tampered")
    result = subprocess.run(
        serve_command(art, free_port()),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr and "sha256" in result.stderr


def serve_once(art, *args: str) -> subprocess.CompletedProcess:
    """A server that is expected to stop by itself (a bad folder)."""
    return subprocess.run(serve_command(art, free_port(), *args), cwd=REPO, capture_output=True, text=True, timeout=60)


def test_a_folder_with_one_model_serves_that_model_and_says_so(tmp_path):
    """KServe's storageUri may hold one model beside the manifest: it is served, the others are
    404s naming what is served, and the "ready" line lists it with the --workers given."""
    art = write_synthetic_artifacts(tmp_path / "artifacts")
    for variant in ("float", "dequant"):
        (art / config.ONNX_NAMES[variant]).unlink()
    process, port = start_server(art, "--workers", "3")
    try:
        assert request(port, "GET", "/v2/models/uint8/ready")[0] == 200
        status, _, body, _ = request(port, "GET", "/v2/models/float")
        assert status == 404 and "the models are uint8" in json.loads(body)["error"]
    finally:
        stop(process)
    lines = [json.loads(line) for line in process.stderr.read().decode().splitlines()]
    (ready,) = [line for line in lines if line.get("message") == "ready"]
    assert ready["models"] == ["uint8"] and ready["workers"] == 3 and ready["artifacts"] == str(art)
    # The deploy page shows this line for a one-model /mnt/models: the same fields, but the time.
    page = (helpers.REPO / "docs" / "deploy.md").read_text()
    shown = json.loads(next(line for line in page.splitlines() if '"message": "ready"' in line))
    assert set(shown) == set(ready) - {"time"} and shown["models"] == ready["models"]


@pytest.mark.parametrize(
    "remove,words",
    [
        ([config.MANIFEST_NAME], "manifest '{art}/manifest.json' not found: the models' folder must hold"),
        (list(config.ONNX_NAMES.values()), "no model in '{art}': expected one or more of model_uint8.onnx"),
    ],
    ids=["no-manifest", "no-model"],
)
def test_a_folder_without_its_manifest_or_any_model_is_one_line_and_exit_2(tmp_path, remove, words):
    art = write_synthetic_artifacts(tmp_path / "artifacts")
    for name in remove:
        (art / name).unlink()
    result = serve_once(art)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert result.stderr.startswith("housing-runtime: error: " + words.format(art=art))


def test_a_missing_folder_is_one_line_and_exit_2(tmp_path):
    result = serve_once(tmp_path / "nowhere")
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    assert "artifacts folder" in result.stderr and "not found" in result.stderr


@pytest.mark.parametrize("value", ["0", "-2"])
def test_workers_must_be_positive(art, value):
    result = serve_once(art, "--workers", value)
    assert result.returncode == 2 and "--workers must be at least 1" in result.stderr


def test_access_log_is_one_json_line_per_request(art):
    process, port = start_server(art)
    for _ in range(3):
        request(port, "GET", "/v2/health/live")
    stop(process)
    lines = [json.loads(line) for line in process.stderr.read().decode().splitlines()]
    live = [line for line in lines if line.get("path") == "/v2/health/live"]
    assert len(live) == 3 and all(line["status"] == 200 and line["method"] == "GET" for line in live)


def test_bytes_that_are_not_http_get_a_json_400(server):
    with socket.create_connection(("127.0.0.1", server)) as conn:
        conn.sendall(b"\x16\x03\x01 not http at all\r\n\r\n")  # a TLS hello, say, or noise
        conn.settimeout(10)
        reply = b""
        while chunk := conn.recv(65536):
            reply += chunk
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400") and b"application/json" in head
    assert "not valid HTTP" in json.loads(body)["error"]


def test_probes_do_not_wait_behind_large_requests(server):
    """Bodies over 1 MiB take one of two slots while they arrive and are predicted. Two uploads
    that stall hold both; a probe (no body) is answered at once all the same."""
    stalled = []
    try:
        for _ in range(2):
            conn = socket.create_connection(("127.0.0.1", server))
            conn.sendall(b"POST /v2/models/uint8/infer HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n{" % (2 << 20))
            stalled.append(conn)
        time.sleep(0.2)
        started = time.monotonic()
        conn = http.client.HTTPConnection("127.0.0.1", server, timeout=10)
        conn.request("GET", "/v2/health/ready")
        assert conn.getresponse().status == 200
        assert time.monotonic() - started < 1.0
    finally:
        for conn in stalled:
            conn.close()
