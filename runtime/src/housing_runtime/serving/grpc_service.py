"""The Open Inference Protocol over gRPC: ``inference.GRPCInferenceService`` (the vendored
KServe ``grpc_predict_v2.proto``) as a thin adapter over the data plane, and the standard
``grpc.health.v1.Health`` service for Kubernetes' grpc probes. It runs on grpc.aio in the HTTP
server's event loop, so both front ends share the models, limits, metrics and shutdown.

- Inputs come typed (``contents.fp32_contents``) or raw (``raw_input_contents``); when they
  came raw the predictions go back raw (``raw_output_contents``), as Triton does.
- Refusals are the data plane's named errors, each with its own gRPC code and the same one line
  as over HTTP (``errors``); client input never gets UNKNOWN or INTERNAL.
- ``x-request-id`` metadata is echoed in the answer's trailing metadata (one is made when absent;
  trailers go out with the status, where initial metadata would cost a send of its own),
  and a W3C ``traceparent``'s trace id goes to the access-log line, as over HTTP.
- Health answers NOT_SERVING until every model is loaded and warmed, and again from the first
  shutdown signal; the server then stops taking calls and drains those in flight.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable
from typing import Any

import grpc
import numpy as np
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from housing_runtime.errors import UserError
from housing_runtime.serving.correlation import request_id_or_new, trace_id
from housing_runtime.serving.dataplane import DataPlane
from housing_runtime.serving.errors import InvalidRequest, ServingError, Unavailable
from housing_runtime.serving.metrics import AccessLine, Metrics
from housing_runtime.serving.proto import grpc_predict_v2_pb2 as pb
from housing_runtime.serving.proto import grpc_predict_v2_pb2_grpc as pb_grpc
from housing_runtime.serving.types import InferRequest, InferResponse, InputTensor, RequestedOutput

SERVICE = "inference.GRPCInferenceService"
# Messages over this many bytes are predicted in a worker thread, a few at a time (``large``), so
# that probes and small calls stay answered; small ones inline, which is faster than a thread hop.
LARGE_MESSAGE_BYTES = 1 << 20
# How often a shutdown looks whether the calls in flight are answered.
DRAIN_POLL_SECONDS = 0.01
# From a shutdown signal, how long new inferences are refused UNAVAILABLE before the server
# stops, and then what grpc's own stop gives calls that raced it.
REFUSING_SECONDS = 1.0
LAST_CALLS_SECONDS = 0.5


class InferenceService(pb_grpc.GRPCInferenceServiceServicer):
    """Each RPC: the request as ``types``, the data plane's answer, the answer as protobuf."""

    def __init__(self, plane: DataPlane, metrics: Metrics, log: bool, large: asyncio.Semaphore):
        self.plane, self.metrics, self.log, self.large = plane, metrics, log, large
        self.in_flight = 0  # calls being answered: the shutdown waits for them

    async def ServerLive(self, request, context):
        return await self.answer(context, "ServerLive", "", lambda: pb.ServerLiveResponse(live=self.plane.live))

    async def ServerReady(self, request, context):
        return await self.answer(context, "ServerReady", "", lambda: pb.ServerReadyResponse(ready=self.plane.ready))

    async def ModelReady(self, request, context):
        def ready():
            return pb.ModelReadyResponse(ready=self.plane.model_ready(request.name, request.version))

        return await self.answer(context, "ModelReady", request.name, ready)

    async def ServerMetadata(self, request, context):
        def metadata():
            meta = self.plane.server_metadata()
            return pb.ServerMetadataResponse(name=meta.name, version=meta.version, extensions=meta.extensions)

        return await self.answer(context, "ServerMetadata", "", metadata)

    async def ModelMetadata(self, request, context):
        def metadata():
            meta = self.plane.model_metadata(request.name, request.version)
            tensors = pb.ModelMetadataResponse.TensorMetadata
            return pb.ModelMetadataResponse(
                name=meta.name,
                versions=meta.versions,
                platform=meta.platform,
                inputs=[tensors(name=t.name, datatype=t.datatype, shape=t.shape) for t in meta.inputs],
                outputs=[tensors(name=t.name, datatype=t.datatype, shape=t.shape) for t in meta.outputs],
            )

        return await self.answer(context, "ModelMetadata", request.name, metadata)

    async def ModelInfer(self, request, context):
        def infer():
            if self.plane.stopping:
                raise Unavailable("the server is shutting down; retry on another replica")
            response = self.plane.infer(infer_request(request))
            return infer_response(response, raw=bool(request.raw_input_contents))

        in_thread = request.ByteSize() > LARGE_MESSAGE_BYTES
        return await self.answer(context, "ModelInfer", request.model_name, infer, in_thread)

    async def answer(self, context, method: str, model: str, reply: Callable[[], Any], in_thread: bool = False) -> Any:
        """``reply()``'s message, or the call aborted with the refusal's code and one line; either
        way counted in the metrics and told in the access log."""
        start = time.perf_counter()
        metadata = dict(context.invocation_metadata() or ())
        request_id = request_id_or_new(metadata.get("x-request-id"))
        context.set_trailing_metadata((("x-request-id", request_id),))
        code, message, rows, result = "OK", "", 0, None
        self.in_flight += 1
        try:
            if in_thread:
                async with self.large:
                    result = await asyncio.to_thread(reply)
            else:
                result = reply()
            rows = int(result.outputs[0].shape[0]) if method == "ModelInfer" else 0
        except ServingError as err:
            code, message = err.grpc_code, str(err)
        finally:
            self.in_flight -= 1
        label = self.plane.label(model) if model else ""
        seconds = time.perf_counter() - start
        self.metrics.record("grpc", label, code, seconds, rows)
        if self.log:
            peer = context.peer() or ""
            AccessLine(
                "grpc", peer, method, f"/{SERVICE}/{method}", code, label, rows, seconds,
                request_id, trace_id(metadata.get("traceparent")),
            ).write()  # fmt: skip
        if code != "OK":
            await context.abort(getattr(grpc.StatusCode, code), message)
        return result


def infer_request(request: pb.ModelInferRequest) -> InferRequest:
    """The protobuf request as ``types``; raw contents go with the input at the same position."""
    raw = request.raw_input_contents
    if raw and len(raw) != len(request.inputs):
        raise InvalidRequest(
            f"raw_input_contents has {len(raw)} entries for {len(request.inputs)} inputs; give one per input"
        )
    inputs = []
    for i, tensor in enumerate(request.inputs):
        typed = typed_contents(tensor)
        if raw and typed is not None:
            raise InvalidRequest(f"input {tensor.name!r} gives contents and raw_input_contents; give one of them")
        inputs.append(
            InputTensor(
                name=tensor.name,
                datatype=tensor.datatype,
                shape=list(tensor.shape),
                parameters=parameters(tensor.parameters),
                raw=raw[i] if raw else None,
                typed=typed if typed is not None else np.empty(0, np.float32),
            )
        )
    return InferRequest(
        model_name=request.model_name,
        model_version=request.model_version or None,
        inputs=inputs,
        outputs=[RequestedOutput(o.name, parameters(o.parameters)) for o in request.outputs],
        id=request.id or None,
        parameters=parameters(request.parameters),
    )


def typed_contents(tensor: pb.ModelInferRequest.InferInputTensor) -> np.ndarray | None:
    """The input's typed contents as float32, or None when it gives none. Only fp32_contents
    fits an FP32 input: another field's values are refused, not converted."""
    contents = tensor.contents
    if not contents.ListFields():  # absent, or empty: proto3 cannot tell them apart
        return None
    for field, _ in contents.ListFields():
        if field.name != "fp32_contents":
            raise InvalidRequest(
                f"input {tensor.name!r} gives {field.name}; an FP32 input takes fp32_contents or raw_input_contents"
            )
    return np.array(contents.fp32_contents, dtype=np.float32)


def parameters(params) -> dict[str, object]:
    """A protobuf parameter map as plain values (bool, int or str)."""
    return {
        key: getattr(value, value.WhichOneof("parameter_choice") or "string_param") for key, value in params.items()
    }


def infer_response(response: InferResponse, raw: bool) -> pb.ModelInferResponse:
    output = pb.ModelInferResponse.InferOutputTensor(
        name=response.output_name, datatype="FP32", shape=[response.rows, 1]
    )
    message = pb.ModelInferResponse(
        model_name=response.model_name,
        model_version=response.model_version,
        id=response.id or "",
        outputs=[output],
    )
    if raw:
        message.raw_output_contents.append(response.predictions.astype("<f4").tobytes())
    else:
        message.outputs[0].contents.fp32_contents.extend(response.predictions.tolist())
    return message


class GrpcFrontEnd:
    """The gRPC server: the inference and health services on ``port``, bounded by the same
    limits as HTTP (message size, concurrent calls)."""

    def __init__(
        self,
        plane: DataPlane,
        metrics: Metrics,
        *,
        host: str,
        port: int,
        max_message_bytes: int,
        max_concurrency: int,
        log: bool,
    ):
        self.plane, self.metrics, self.log = plane, metrics, log
        self.host, self.port = host, port
        self.address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        self.max_message_bytes, self.max_concurrency = max_message_bytes, max_concurrency
        self.health = health.aio.HealthServicer()
        self.server: grpc.aio.Server | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.stopped: asyncio.Task | None = None

    async def start(self, large: asyncio.Semaphore) -> None:
        """Listens, with health NOT_SERVING until the models are loaded (``serving``)."""
        self.check_port_free()  # before grpc's core starts: a failed bind there aborts the process at exit
        server = grpc.aio.server(
            options=[
                ("grpc.max_receive_message_length", self.max_message_bytes),
                ("grpc.max_send_message_length", -1),
                ("grpc.so_reuseport", 0),  # a port in use is an error, not a second listener
            ],
            maximum_concurrent_rpcs=self.max_concurrency,
        )
        self.service = InferenceService(self.plane, self.metrics, self.log, large)
        pb_grpc.add_GRPCInferenceServiceServicer_to_server(self.service, server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        for service in ("", SERVICE):
            await self.health.set(service, health_pb2.HealthCheckResponse.NOT_SERVING)
        server.add_insecure_port(self.address)
        await server.start()
        self.server, self.loop = server, asyncio.get_running_loop()
        if self.plane.loaded:  # loaded before the port opened: ``serving_threadsafe`` saw no loop
            await self.serving()

    def check_port_free(self) -> None:
        """One line when the port cannot be listened on (taken, or not this machine's address)."""
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as grpc binds
            try:
                probe.bind((self.host, self.port))
            except OSError as err:
                raise UserError(
                    f"cannot listen for gRPC on {self.address} ({err.strerror}); pick another --grpc-port, "
                    "or 0 for no gRPC"
                ) from None

    async def serving(self) -> None:
        """Every model is loaded and warmed: health answers SERVING (unless stopping already)."""
        for service in ("", SERVICE):
            await self.health.set(service, health_pb2.HealthCheckResponse.SERVING)

    def serving_threadsafe(self) -> None:
        """``serving``, from the loader's thread."""
        if self.loop is None:  # not started: ``start`` sees the models loaded
            return
        try:
            asyncio.run_coroutine_threadsafe(self.serving(), self.loop)
        except RuntimeError:  # the loop has closed: the server stopped before the models loaded
            pass

    def begin_stop(self, grace: float) -> None:
        """From a shutdown signal: health NOT_SERVING and new inferences refused UNAVAILABLE (the
        data plane is stopping) at once; the server stops once the calls in flight are answered,
        or ``grace`` s have passed."""
        if self.stopped is None and self.server is not None:
            self.stopped = asyncio.ensure_future(self.stop(self.server, grace))

    async def stop(self, server: grpc.aio.Server, grace: float) -> None:
        # grpc's own stop refuses new calls CANCELLED, or as a refused connection, and clients
        # do not retry CANCELLED: so the server keeps running for REFUSING_SECONDS at least,
        # refusing new inferences UNAVAILABLE itself, until the calls in flight are answered.
        await self.health.enter_graceful_shutdown()
        loop = asyncio.get_running_loop()
        started = loop.time()
        while (self.service.in_flight or loop.time() < started + REFUSING_SECONDS) and loop.time() < started + grace:
            await asyncio.sleep(DRAIN_POLL_SECONDS)
        # What is left are health watchers, whose streams never end: they are closed.
        await server.stop(LAST_CALLS_SECONDS)

    async def stopped_within(self, grace: float) -> None:
        self.begin_stop(grace)
        if self.stopped is not None:
            await self.stopped
