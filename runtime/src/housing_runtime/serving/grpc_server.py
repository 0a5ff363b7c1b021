"""The gRPC server of ``serve``: ``inference.GRPCInferenceService`` (``grpc_service``) and the
standard ``grpc.health.v1.Health`` (grpcio-health-checking) for Kubernetes' grpc probes, on
grpc.aio in the HTTP server's event loop, so that both front ends share the models, limits,
metrics and shutdown.

- Health answers NOT_SERVING until every model is loaded and warmed, SERVING then, and
  NOT_SERVING again from the first shutdown signal. Its messages are parsed by the server's
  code too: a malformed one is INVALID_ARGUMENT, not UNKNOWN.
- Connections are bounded as over HTTP: a handshake within --header-timeout, closed after
  IDLE_CONNECTION_SECONDS without calls, and at most 16 per --max-concurrency.
- SIGTERM: health NOT_SERVING and new inferences refused UNAVAILABLE at once; the calls in
  flight are answered, then the server stops, within the shutdown's grace.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import socket

import grpc
from grpc_health.v1 import health, health_pb2

from housing_runtime.errors import UserError
from housing_runtime.serving.dataplane import DataPlane
from housing_runtime.serving.errors import InvalidRequest
from housing_runtime.serving.grpc_codec import parsed
from housing_runtime.serving.grpc_service import SERVICE, InferenceService
from housing_runtime.serving.metrics import Metrics

HEALTH = "grpc.health.v1.Health"
# A connection without calls for this long is closed (clients reconnect when they need to).
IDLE_CONNECTION_SECONDS = 60
# How often a shutdown looks whether the calls in flight are answered.
DRAIN_POLL_SECONDS = 0.01
# From a shutdown signal: new inferences are refused UNAVAILABLE for REFUSING_SECONDS at least,
# and until no call has come for QUIET_SECONDS; then grpc's own stop gives calls that raced it
# LAST_CALLS_SECONDS.
REFUSING_SECONDS = 1.0
QUIET_SECONDS = 0.5
LAST_CALLS_SECONDS = 0.5
# The loader waits this long at most for health to turn SERVING (the event loop's own work).
SERVING_WAIT_SECONDS = 5.0


def health_handlers(servicer: health.aio.HealthServicer) -> grpc.GenericRpcHandler:
    """grpc.health.v1.Health's Check and Watch, their messages parsed here (INVALID_ARGUMENT
    when they do not parse), answered by grpcio-health-checking's servicer."""

    async def check(data: bytes, context):
        request = await parsed_or_abort(data, context)
        return await servicer.Check(request, context)

    async def watch(data: bytes, context):
        request = await parsed_or_abort(data, context)
        await servicer.Watch(request, context)

    serialize = health_pb2.HealthCheckResponse.SerializeToString
    return grpc.method_handlers_generic_handler(
        HEALTH,
        {
            "Check": grpc.unary_unary_rpc_method_handler(check, response_serializer=serialize),
            "Watch": grpc.unary_stream_rpc_method_handler(watch, response_serializer=serialize),
        },
    )


async def parsed_or_abort(data: bytes, context) -> health_pb2.HealthCheckRequest:
    try:
        return parsed(health_pb2.HealthCheckRequest, data)
    except InvalidRequest as err:
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(err))
        raise  # abort raises; this line is never reached


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
        header_timeout: float,
        max_connections: int,
        log: bool,
    ):
        self.plane, self.metrics, self.log = plane, metrics, log
        self.header_timeout, self.max_connections = header_timeout, max_connections
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
                # Idle or silent connections cost a file descriptor each, shared with HTTP:
                # closed as HTTP closes them, and capped as HTTP caps them.
                ("grpc.server_handshake_timeout_ms", int(self.header_timeout * 1000)),
                ("grpc.max_connection_idle_ms", IDLE_CONNECTION_SECONDS * 1000),
                ("grpc.max_allowed_incoming_connections", self.max_connections),
            ],
            # grpc's own cap, far above --max-concurrency (which the service counts itself, health
            # not included): a guard against streams nobody answers, such as many health watchers.
            maximum_concurrent_rpcs=self.max_connections,
        )
        self.service = InferenceService(self.plane, self.metrics, self.log, large, self.max_concurrency)
        server.add_generic_rpc_handlers((self.service.handlers(), health_handlers(self.health)))
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
        """``serving``, from the loader's thread, waited for: the "ready" line it then writes
        must not come before health says SERVING."""
        if self.loop is None:  # not started: ``start`` sees the models loaded
            return
        try:
            done = asyncio.run_coroutine_threadsafe(self.serving(), self.loop)
        except RuntimeError:  # the loop has closed: the server stopped before the models loaded
            return
        try:
            done.result(timeout=SERVING_WAIT_SECONDS)
        except (concurrent.futures.TimeoutError, concurrent.futures.CancelledError):
            pass  # the loop stopped meanwhile: the server is going away

    def begin_stop(self, grace: float) -> None:
        """From a shutdown signal: health NOT_SERVING and new inferences refused UNAVAILABLE (the
        data plane is stopping) at once; the server stops once the calls in flight are answered,
        or ``grace`` s have passed."""
        if self.stopped is None and self.server is not None:
            self.stopped = asyncio.ensure_future(self.stop(self.server, grace))

    async def stop(self, server: grpc.aio.Server, grace: float) -> None:
        # grpc's own stop refuses new calls CANCELLED, which clients do not retry: so the server
        # keeps running, refusing new inferences UNAVAILABLE itself, until the calls in flight
        # are answered and no call has come for QUIET_SECONDS (REFUSING_SECONDS at least).
        await self.health.enter_graceful_shutdown()
        loop = asyncio.get_running_loop()
        started = loop.time()

        def draining() -> bool:
            now = loop.time()
            quiet = now - max(self.service.last_call, started + REFUSING_SECONDS - QUIET_SECONDS) >= QUIET_SECONDS
            return (self.service.in_flight > 0 or not quiet) and now < started + grace

        while draining():
            await asyncio.sleep(DRAIN_POLL_SECONDS)
        # What is left are health watchers, whose streams never end: they are closed.
        await server.stop(LAST_CALLS_SECONDS)

    async def stopped_within(self, grace: float) -> None:
        self.begin_stop(grace)
        if self.stopped is not None:
            await self.stopped
