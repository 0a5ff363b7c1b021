"""`serve`'s V2 gRPC front end: tritonclient[grpc]'s conformance, the standard health service,
every refusal's code and words, request ids, metrics, readiness while loading, and the drain on
SIGTERM. The same checks run against the image (tests/test_container.py)."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import subprocess
import tempfile
import threading
import time

import grpc
import numpy as np
import onnxruntime as ort
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client import generate_latest

import grpc_checks
from helpers import write_synthetic_artifacts
from housing_runtime.serving.proto import grpc_predict_v2_pb2 as pb
from pipeline import config
from server_checks import free_port, request, serve_command, wait_ready

pytestmark = pytest.mark.network  # 127.0.0.1 only, bounded
DRAIN_SECONDS = 10


@pytest.fixture(scope="module")
def art(tmp_path_factory):
    return write_synthetic_artifacts(tmp_path_factory.mktemp("grpc") / "artifacts")


def start(art, grpc_port: int, *args: str) -> tuple[subprocess.Popen, int]:
    port = free_port()
    command = serve_command(art, port, "--grpc-port", str(grpc_port), *args)
    # stderr (the access log) to a file: a pipe nobody reads fills, and the server blocks on it.
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=tempfile.TemporaryFile())
    wait_ready(port, process, "the server", 60)
    return process, port


@pytest.fixture(scope="module")
def served(art):
    """A server with gRPC on a free port, its HTTP port, and its stderr (the access log)."""
    grpc_port = free_port()
    process, port = start(art, grpc_port, "--max-rows", "5000", "--max-body-bytes", "2000000")
    yield grpc_port, port
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=20)


def reference(art):
    def predict(variant: str, X: np.ndarray) -> np.ndarray:
        sess = ort.InferenceSession(str(art / config.ONNX_NAMES[variant]), providers=["CPUExecutionProvider"])
        return sess.run(None, {sess.get_inputs()[0].name: X})[0].reshape(-1)

    return predict


@pytest.mark.parametrize("model", config.MODEL_VARIANTS)
def test_tritonclient_grpc_conformance_raw_and_typed(served, art, model, tmp_path):
    grpc_checks.check_tritonclient_conformance(served[0], model, reference(art), tmp_path)


def test_health_service_answers_serving_once_loaded(served):
    grpc_checks.check_health(served[0])


@pytest.mark.parametrize("code,request_,words", grpc_checks.BAD_INFERS, ids=[w for _, _, w in grpc_checks.BAD_INFERS])
def test_every_refusal_gets_its_code_and_words(served, code, request_, words):
    grpc_checks.check_bad_infer(served[0], code, request_, words)


def test_unknown_models_and_versions_are_not_found(served):
    grpc_checks.check_unknown_models(served[0])


def test_request_id_is_echoed_or_made(served):
    call = grpc_checks.stub(served[0]).ServerLive
    _, given = call.with_call(pb.ServerLiveRequest(), metadata=(("x-request-id", "req-42"),), timeout=10)
    assert ("x-request-id", "req-42") in [(m.key, m.value) for m in given.trailing_metadata()]
    _, made = call.with_call(pb.ServerLiveRequest(), metadata=(("x-request-id", "bad id"),), timeout=10)
    made_id = dict((m.key, m.value) for m in made.trailing_metadata())["x-request-id"]
    assert len(made_id) == 32 and made_id != "bad id"


def test_metrics_count_grpc_calls_by_protocol(served):
    grpc_port, port = served
    grpc_checks.stub(grpc_port).ServerReady(pb.ServerReadyRequest(), timeout=10)
    grpc_checks.check_bad_infer(grpc_port, *grpc_checks.BAD_INFERS[-4])  # NOT_FOUND: unknown model
    text = request(port, "GET", "/metrics")[2].decode()
    assert 'housing_requests_total{code="OK",model="",protocol="grpc"}' in text
    assert 'housing_requests_total{code="NOT_FOUND",model="unknown",protocol="grpc"}' in text


@pytest.mark.parametrize("option,words", [("--grpc-port", "cannot listen for gRPC on"), ("--port", "cannot listen on")])
def test_a_taken_port_is_one_line_and_exit_2(art, option, words):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = str(taken.getsockname()[1])
        ports = {"--port": str(free_port()), "--grpc-port": str(free_port()), option: busy}
        command = serve_command(art, int(ports["--port"]), "--grpc-port", ports["--grpc-port"])
        out = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"housing-runtime: error: {words} 127.0.0.1:{busy} "), lines


def test_grpc_port_must_differ_from_the_http_port(art):
    port = free_port()
    out = subprocess.run(serve_command(art, port, "--grpc-port", str(port)), capture_output=True, text=True)
    assert out.returncode == 2 and "give gRPC a port of its own" in out.stderr


def test_sigterm_turns_health_not_serving_drains_calls_and_exits_0(art):
    """A health watcher sees NOT_SERVING, and liveness probes keep coming; calls in flight are
    answered, later ones refused UNAVAILABLE by the server itself, "shutting down" (never
    CANCELLED or a refused connection, which clients do not retry the same way); the process
    exits 0 soon after the calls are answered."""
    grpc_port = free_port()
    process, _ = start(art, grpc_port)
    channel = grpc.insecure_channel(f"127.0.0.1:{grpc_port}")
    watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(service=""), timeout=30)
    assert next(watch).status == health_pb2.HealthCheckResponse.SERVING
    codes: list = []
    refusals: list[str] = []
    X = np.ones((20000, 8), np.float32)
    call = pb.ModelInferRequest(
        model_name="float", inputs=[grpc_checks.tensor((20000, 8))], raw_input_contents=[X.tobytes()]
    )

    def infer_until_refused() -> None:
        stub = grpc_checks.stub(grpc_port)
        for _ in range(200):
            try:
                stub.ModelInfer(call, timeout=10)
                codes.append(grpc.StatusCode.OK)
            except grpc.RpcError as err:
                codes.append(err.code())
                refusals.append(err.details())
                return

    def probe_liveness() -> None:  # as a kubelet would, faster: probes must not hold the drain open
        stub = grpc_checks.stub(grpc_port)
        while process.poll() is None:
            try:
                stub.ServerLive(pb.ServerLiveRequest(), timeout=1)
            except grpc.RpcError:
                pass
            time.sleep(0.1)

    clients = [threading.Thread(target=infer_until_refused) for _ in range(2)]
    clients.append(threading.Thread(target=probe_liveness, daemon=True))
    for thread in clients:
        thread.start()
    time.sleep(0.5)
    start_stop = time.monotonic()
    process.send_signal(signal.SIGTERM)
    statuses = [update.status for update in watch_until_closed(watch)]
    assert process.wait(timeout=DRAIN_SECONDS + 5) == 0
    assert time.monotonic() - start_stop < DRAIN_SECONDS / 2  # the drain ends once the calls are answered
    for thread in clients:
        thread.join(timeout=15)
    assert health_pb2.HealthCheckResponse.NOT_SERVING in statuses
    assert codes.count(grpc.StatusCode.OK) >= 2
    assert set(codes) <= {grpc.StatusCode.OK, grpc.StatusCode.UNAVAILABLE}, codes
    assert refusals and all("shutting down" in words for words in refusals), refusals


def watch_until_closed(watch):
    try:
        yield from watch
    except grpc.RpcError:  # the server went away: the stream ends
        return


def test_not_ready_while_loading_then_serving(art):
    """In process: before the models are loaded, calls are UNAVAILABLE and health NOT_SERVING;
    once loaded, SERVING and answered."""
    from housing_runtime.serving.dataplane import DataPlane
    from housing_runtime.serving.grpc_server import GrpcFrontEnd
    from housing_runtime.serving.lifecycle import load_models
    from housing_runtime.serving.metrics import Metrics

    async def scenario() -> None:
        plane, port = DataPlane(), free_port()
        front = GrpcFrontEnd(
            plane,
            Metrics(),
            host="127.0.0.1",
            port=port,
            max_message_bytes=1 << 20,
            max_concurrency=4,
            header_timeout=10,
            max_connections=64,
            log=False,
        )
        await front.start(asyncio.Semaphore(2))
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            health = health_pb2_grpc.HealthStub(channel)
            infer = channel.unary_unary(
                "/inference.GRPCInferenceService/ModelInfer",
                request_serializer=pb.ModelInferRequest.SerializeToString,
                response_deserializer=pb.ModelInferResponse.FromString,
            )
            row = pb.ModelInferRequest(model_name="uint8", inputs=[grpc_checks.tensor(values=grpc_checks.ROW)])
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await infer(row)
            assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
            assert "still loading" in refused.value.details()
            check = health_pb2.HealthCheckRequest(service="")
            assert (await health.Check(check)).status == health_pb2.HealthCheckResponse.NOT_SERVING
            plane.load(load_models(art, verify=True))
            await front.serving()
            assert (await health.Check(check)).status == health_pb2.HealthCheckResponse.SERVING
            assert (await infer(row)).outputs[0].shape == [1, 1]
        await front.stopped_within(1)

    asyncio.run(scenario())


def test_the_repository_rpcs_are_unimplemented(served):
    """The models are fixed at start-up: the proto's load and unload answer UNIMPLEMENTED."""
    with pytest.raises(grpc.RpcError) as refused:
        grpc_checks.stub(served[0]).RepositoryModelLoad(pb.RepositoryModelLoadRequest(model_name="uint8"), timeout=10)
    assert refused.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert refused.value.details() == "the models are fixed at start-up: load and unload are not served"


@pytest.mark.parametrize("method", ["/inference.GRPCInferenceService/ModelInfer", "/grpc.health.v1.Health/Check"])
def test_a_message_that_does_not_parse_is_invalid_argument(served, method):
    """Bytes that are not the method's message: INVALID_ARGUMENT with one line, never UNKNOWN."""
    call = grpc.insecure_channel(f"127.0.0.1:{served[0]}").unary_unary(method)
    for garbage in (b"\xff\xff\xff\xff", b"\x0a\x02\xff\xfe"):  # corrupt; a string field not UTF-8
        with pytest.raises(grpc.RpcError) as refused:
            call(garbage, timeout=10)
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT, refused.value.details()
        assert "is not a valid" in refused.value.details()


def test_many_inputs_are_refused_before_their_contents_are_read(served):
    inputs = [grpc_checks.tensor(values=grpc_checks.ROW) for _ in range(5000)]
    started = time.monotonic()
    grpc_checks.check_bad_infer(served[0], grpc.StatusCode.INVALID_ARGUMENT, grpc_checks.infer(*inputs), "one tensor")
    assert time.monotonic() - started < 2


def test_health_watchers_take_no_inference_slots(art):
    """Watch streams stay open: with --max-concurrency 1, two watchers must not make the health
    check or an inference wait or be refused."""
    grpc_port = free_port()
    process, _ = start(art, grpc_port, "--max-concurrency", "1")
    try:
        channel = grpc.insecure_channel(f"127.0.0.1:{grpc_port}")
        health = health_pb2_grpc.HealthStub(channel)
        watchers = [health.Watch(health_pb2.HealthCheckRequest(service=""), timeout=30) for _ in range(2)]
        for watcher in watchers:
            assert next(watcher).status == health_pb2.HealthCheckResponse.SERVING
        grpc_checks.check_health(grpc_port)
        row = grpc_checks.infer(grpc_checks.tensor(values=grpc_checks.ROW))
        assert grpc_checks.stub(grpc_port).ModelInfer(row, timeout=10).outputs[0].shape == [1, 1]
        for watcher in watchers:
            watcher.cancel()
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0


class FakeContext:
    """What InferenceService.answer asks of grpc.aio's context, for a call handled in process."""

    def invocation_metadata(self):
        return (("x-request-id", "gone-1"),)

    def set_trailing_metadata(self, metadata) -> None:
        self.trailers = metadata

    def peer(self) -> str:
        return "ipv4:127.0.0.1:1"

    async def abort(self, code, details):
        raise AssertionError(f"aborted {code}: {details}")


def test_a_call_the_client_abandons_is_counted_and_logged_as_cancelled(capsys):
    """A client that goes away (or whose deadline passes) cancels the handler: the call still
    gets its access-log line and its count, with the status CANCELLED, and is not answered."""
    from housing_runtime.serving.dataplane import DataPlane
    from housing_runtime.serving.grpc_service import InferenceService
    from housing_runtime.serving.metrics import Metrics

    async def scenario() -> None:
        service = InferenceService(DataPlane(), Metrics(), True, asyncio.Semaphore(1), max_concurrency=4)

        def abandoned():
            raise asyncio.CancelledError

        with pytest.raises(asyncio.CancelledError):
            await service.answer(FakeContext(), "ModelInfer", abandoned, counted=True)
        assert service.in_flight == 0 and service.inferring == 0
        text = generate_latest(service.metrics.registry).decode()
        assert 'housing_requests_total{code="CANCELLED",model="",protocol="grpc"} 1.0' in text

    asyncio.run(scenario())
    line = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    assert line["status"] == "CANCELLED" and line["request_id"] == "gone-1" and line["method"] == "ModelInfer"
