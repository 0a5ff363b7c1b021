"""The Open Inference Protocol over gRPC: ``inference.GRPCInferenceService`` (the vendored
KServe ``grpc_predict_v2.proto``) as a thin adapter over the data plane, registered by hand
(``handlers``) so that every message is parsed by the server's own code:

- A message that does not parse is INVALID_ARGUMENT with one line, not grpc's UNKNOWN, and
  gets its access-log line like any other refusal.
- ModelInfer's message is parsed where it is predicted: a message over LARGE_MESSAGE_BYTES in a
  worker thread, --workers at a time with HTTP's large bodies, so that probes and small
  calls stay answered and a flood of large messages is not parsed all at once.
- Inputs come typed (``contents.fp32_contents``) or raw (``raw_input_contents``); when they came
  raw the predictions go back raw (``raw_output_contents``), as Triton does.
- Refusals are the data plane's named errors, each with its own gRPC code and the same one line
  as over HTTP (``errors``); client input never gets UNKNOWN or INTERNAL.
- ``--max-concurrency`` inferences at once: the one beyond is refused UNAVAILABLE (retry), as
  HTTP refuses it 503. Liveness, readiness and health are never refused.
- ``x-request-id`` metadata is echoed in the trailing metadata (one is made when absent;
  trailers go out with the status, where initial metadata would cost a send of its own), and a
  W3C ``traceparent``'s trace id goes to the access-log line, as over HTTP.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import grpc

from housing_runtime.serving.correlation import request_id_or_new, trace_id
from housing_runtime.serving.dataplane import DataPlane
from housing_runtime.serving.errors import ServingError, Unavailable, Unimplemented
from housing_runtime.serving.grpc_codec import infer_request, infer_response, parsed
from housing_runtime.serving.metrics import AccessLine, Metrics
from housing_runtime.serving.proto import grpc_predict_v2_pb2 as pb

SERVICE = "inference.GRPCInferenceService"
# Messages over this many bytes are parsed and predicted in a worker thread, a few at a time.
LARGE_MESSAGE_BYTES = 1 << 20


class InferenceService:
    """Each RPC: the request parsed and turned into ``types``, the data plane's answer, the
    answer as protobuf; ``answer`` counts, logs and maps refusals for all of them."""

    def __init__(self, plane: DataPlane, metrics: Metrics, log: bool, large: asyncio.Semaphore, max_concurrency: int):
        self.plane, self.metrics, self.log, self.large = plane, metrics, log, large
        self.max_concurrency = max_concurrency
        self.in_flight = 0  # calls being answered: the shutdown waits for them
        self.inferring = 0  # ModelInfer calls being answered: at most max_concurrency
        self.last_call = 0.0  # when the last inference arrived (the loop's clock): the shutdown waits for a quiet spell

    def handlers(self) -> grpc.GenericRpcHandler:
        """The service's methods, each taking the message's bytes."""

        def method(handler: Callable, response) -> grpc.RpcMethodHandler:
            return grpc.unary_unary_rpc_method_handler(handler, response_serializer=response.SerializeToString)

        return grpc.method_handlers_generic_handler(
            SERVICE,
            {
                "ServerLive": method(self.ServerLive, pb.ServerLiveResponse),
                "ServerReady": method(self.ServerReady, pb.ServerReadyResponse),
                "ModelReady": method(self.ModelReady, pb.ModelReadyResponse),
                "ServerMetadata": method(self.ServerMetadata, pb.ServerMetadataResponse),
                "ModelMetadata": method(self.ModelMetadata, pb.ModelMetadataResponse),
                "ModelInfer": method(self.ModelInfer, pb.ModelInferResponse),
                "RepositoryModelLoad": method(self.RepositoryModelLoad, pb.RepositoryModelLoadResponse),
                "RepositoryModelUnload": method(self.RepositoryModelUnload, pb.RepositoryModelUnloadResponse),
            },
        )

    async def ServerLive(self, data: bytes, context):
        def live():
            parsed(pb.ServerLiveRequest, data)
            return pb.ServerLiveResponse(live=self.plane.live)

        return await self.answer(context, "ServerLive", live)

    async def ServerReady(self, data: bytes, context):
        def ready():
            parsed(pb.ServerReadyRequest, data)
            return pb.ServerReadyResponse(ready=self.plane.ready)

        return await self.answer(context, "ServerReady", ready)

    async def ModelReady(self, data: bytes, context):
        call = Call()

        def ready():
            request = call.named(parsed(pb.ModelReadyRequest, data), "name")
            return pb.ModelReadyResponse(ready=self.plane.model_ready(request.name, request.version))

        return await self.answer(context, "ModelReady", ready, call)

    async def ServerMetadata(self, data: bytes, context):
        def metadata():
            parsed(pb.ServerMetadataRequest, data)
            meta = self.plane.server_metadata()
            return pb.ServerMetadataResponse(name=meta.name, version=meta.version, extensions=meta.extensions)

        return await self.answer(context, "ServerMetadata", metadata)

    async def ModelMetadata(self, data: bytes, context):
        call = Call()

        def metadata():
            request = call.named(parsed(pb.ModelMetadataRequest, data), "name")
            meta = self.plane.model_metadata(request.name, request.version)
            tensors = pb.ModelMetadataResponse.TensorMetadata
            return pb.ModelMetadataResponse(
                name=meta.name,
                versions=meta.versions,
                platform=meta.platform,
                inputs=[tensors(name=t.name, datatype=t.datatype, shape=t.shape) for t in meta.inputs],
                outputs=[tensors(name=t.name, datatype=t.datatype, shape=t.shape) for t in meta.outputs],
            )

        return await self.answer(context, "ModelMetadata", metadata, call)

    async def ModelInfer(self, data: bytes, context):
        call = Call()

        def infer():
            request = call.named(parsed(pb.ModelInferRequest, data), "model_name")
            response = self.plane.infer(infer_request(request))
            call.rows = response.rows
            return infer_response(response, raw=bool(request.raw_input_contents))

        return await self.answer(context, "ModelInfer", infer, call, len(data) > LARGE_MESSAGE_BYTES, counted=True)

    async def RepositoryModelLoad(self, data: bytes, context):
        return await self.answer(context, "RepositoryModelLoad", fixed_models)

    async def RepositoryModelUnload(self, data: bytes, context):
        return await self.answer(context, "RepositoryModelUnload", fixed_models)

    async def answer(
        self,
        context,
        method: str,
        reply: Callable[[], Any],
        call: Call | None = None,
        in_thread: bool = False,
        counted: bool = False,
    ) -> Any:
        """``reply()``'s message, or the call aborted with the refusal's code and one line; either
        way counted in the metrics and told in the access log."""
        start = time.perf_counter()
        if counted:  # an inference, not a probe: the shutdown waits for a spell without them
            self.last_call = asyncio.get_running_loop().time()
        call = call or Call()
        metadata = dict(context.invocation_metadata() or ())
        request_id = request_id_or_new(metadata.get("x-request-id"))
        context.set_trailing_metadata((("x-request-id", request_id),))
        code, message, result = "OK", "", None
        # Checked as the call arrives: a call admitted before a shutdown signal is answered, even
        # if it then waits for a worker slot.
        stopping = counted and self.plane.stopping
        busy = counted and self.inferring >= self.max_concurrency
        self.in_flight += 1
        self.inferring += counted
        try:
            if stopping:
                raise Unavailable("the server is shutting down; retry on another replica")
            if busy:
                raise Unavailable(
                    f"the server is answering {self.max_concurrency} inferences (--max-concurrency); retry"
                )
            result = await self.in_worker(reply) if in_thread else reply()
        except ServingError as err:
            code, message = err.grpc_code, str(err)
        except asyncio.CancelledError:  # the client went away, or its deadline passed: told, then let go
            self.told(context, method, "CANCELLED", call, start, request_id, metadata)
            raise
        finally:
            self.in_flight -= 1
            self.inferring -= counted
        self.told(context, method, code, call, start, request_id, metadata)
        if code != "OK":
            await context.abort(getattr(grpc.StatusCode, code), message)
        return result

    def told(self, context, method: str, code: str, call: Call, start: float, request_id: str, metadata: dict) -> None:
        """One call counted in the metrics and told in the access log."""
        label = self.plane.label(call.model) if call.model else ""
        seconds = time.perf_counter() - start
        self.metrics.record("grpc", label, code, seconds, call.rows)
        if self.log:
            AccessLine(
                "grpc", context.peer() or "", method, f"/{SERVICE}/{method}", code, label, call.rows, seconds,
                request_id, trace_id(metadata.get("traceparent")),
            ).write()  # fmt: skip

    async def in_worker(self, reply: Callable[[], Any]) -> Any:
        """``reply()`` in a worker thread, holding one of the ``large`` slots until the thread is
        done, even when the client gives up first (its deadline, a cancel): else a stream of
        abandoned calls could run any number of large predictions at once."""
        async with self.large:
            running = asyncio.get_running_loop().run_in_executor(None, reply)
            try:
                return await asyncio.shield(running)
            except asyncio.CancelledError:
                await asyncio.wait({running})
                raise


class Call:
    """What ``answer`` learns of a call while its message is parsed and answered."""

    def __init__(self) -> None:
        self.model, self.rows = "", 0

    def named(self, request, field: str):
        """``request``, its model's name (its ``field``) kept for the metrics and the log."""
        self.model = getattr(request, field)
        return request


def fixed_models():
    raise Unimplemented("the models are fixed at start-up: load and unload are not served")
