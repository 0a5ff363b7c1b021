"""`python -m housing_runtime serve`: the three models over KServe V2 (and V1) HTTP on uvicorn,
and over gRPC (``grpc_server``) in the same event loop.

The protocol is ``rest``'s, over the data plane both front ends share; this module moves bytes
and owns what HTTP adds: the body limit and read timeout, content encodings, metrics
(Prometheus text at /metrics), one JSON access-log line per request on stderr, and a clean
shutdown.

- Every model is checked against the manifest's sha256, loaded and warmed up while the port is
  already open and readiness answers 503; a bad artifact then stops the server with one line
  and exit 2, never a server that answers 500.
- SIGTERM (or SIGINT): readiness turns false (503), no new connections are accepted, requests
  in flight are answered (a body that has not arrived STOP_BODY_SECONDS later gets a 503),
  and the process exits within SHUTDOWN_SECONDS.
- At most --max-concurrency requests are in progress at once, from their headers received to
  their response sent (probes and /metrics aside); one more gets a JSON 503 with Retry-After.
  Idle connections are not requests: the header timeout closes them (``h11_connection``).
- A request's line and headers must arrive within the header timeout (``h11_connection``),
  its body within the read timeout (else a 408, and the connection closed).
- Every answer carries the request's X-Request-ID (the client's, or a new one), which the
  access-log line tells with the trace id of a W3C traceparent.
- Large requests are decoded and predicted off the event loop, --workers at a time (by default
  the container's CPU limit: probes stay answered, and memory stays bounded by that many
  bodies); small ones inline, which is faster than a thread hop.
- Once the models are loaded, one JSON line ("ready") tells which ones (all those in the
  folder: a folder with one model serves that one) and the ports and workers.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import socket
import time
import zlib

import uvicorn
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from housing_runtime import config
from housing_runtime.errors import UserError
from housing_runtime.serving.correlation import request_id_or_new, trace_id
from housing_runtime.serving.cpus import available_cpus
from housing_runtime.serving.dataplane import DataPlane
from housing_runtime.serving.errors import (
    InvalidRequest,
    MethodNotAllowed,
    RequestTimeout,
    ServingError,
    TooLarge,
    Unavailable,
    UnsupportedEncoding,
)
from housing_runtime.serving.grpc_server import GrpcFrontEnd
from housing_runtime.serving.h11_connection import HEADER_BYTES, connection_class
from housing_runtime.serving.lifecycle import Loader, Server
from housing_runtime.serving.messages import Limits, Reply, error_reply
from housing_runtime.serving.metrics import AccessLine, Metrics, log_server_events, request_path
from housing_runtime.serving.options import MAX_BODY_BYTES, MAX_CONCURRENCY, READ_TIMEOUT_SECONDS
from housing_runtime.serving.rest import RestAdapter
from housing_runtime.serving.rest_codec import byte_count

# After a shutdown signal, a body still arriving gets this long (within SHUTDOWN_SECONDS).
STOP_BODY_SECONDS = 5.0
# Bodies over this many bytes are large: read and handled --workers at a time, in a thread.
LARGE_BODY_BYTES = 1 << 20
KEEP_ALIVE_SECONDS = 5
SHUTDOWN_SECONDS = 10
ENCODINGS = ("gzip", "deflate")
# RFC 1952 allows a gzip body of several members (concatenated files); each costs a fresh
# inflater, so their number is bounded. The first member is inflated in one call, as one string
# (no copy to join); the others from a window that starts at GZIP_WINDOW bytes and doubles, so
# that zlib's copy of the bytes after each member's end stays within twice the member's size.
MAX_GZIP_MEMBERS = 1024
GZIP_WINDOW = 64 << 10
# Never refused for --max-concurrency: a busy server is alive (Kubernetes restarts a server
# whose liveness probe fails), and /metrics is how an operator sees the load.
UNCOUNTED_PATHS = frozenset({"/v2/health/live", "/v2/health/ready", "/metrics"})
# Open connections per --max-concurrency request: idle ones are closed by the header timeout,
# so this only bounds file descriptors; past it, a new connection gets a 503.
CONNECTIONS_PER_REQUEST = 16


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refused past ``limit`` bytes (413) before it is all read where possible."""
    declared = byte_count(request.headers.get("content-length"))
    if declared is not None and declared > limit:
        raise TooLarge(f"the body is {declared} bytes, over the limit of {limit}; split the request")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise TooLarge(f"the body is over the limit of {limit} bytes; split the request")
        chunks.append(chunk)
    return b"".join(chunks)


def decode(body: bytes, encoding: str | None, limit: int) -> bytes:
    """The body without its Content-Encoding (deflate, or gzip of one or more members), refused
    past ``limit`` bytes decoded, and refused when truncated or followed by other bytes."""
    name = (encoding or "").strip().lower()
    if name in ("", "identity"):
        return body
    if name not in ENCODINGS:
        raise UnsupportedEncoding(f"Content-Encoding {encoding!r} is not supported; send gzip, deflate or none")
    wbits, members = (31, MAX_GZIP_MEMBERS) if name == "gzip" else (15, 1)
    rest, parts, size = memoryview(body), [], 0
    for member in range(members):
        data, rest = inflate(rest, wbits, limit - size, name, first=member == 0)  # the room left
        parts.append(data)
        size += len(data)
        if size > limit:
            raise TooLarge(f"the body inflates to over the limit of {limit} bytes; split the request")
        if not rest:
            return b"".join(parts)
    if name == "gzip":
        raise InvalidRequest(f"the body has over {MAX_GZIP_MEMBERS} gzip members; compress it as one")
    raise incomplete(name)


def inflate(stream: memoryview, wbits: int, room: int, name: str, first: bool) -> tuple[bytes, memoryview]:
    """The first zlib or gzip stream in ``stream`` and the bytes after it. Decoding stops past
    ``room`` bytes: what it returns is then longer than ``room``."""
    inflater = zlib.decompressobj(wbits=wbits)
    parts, size, read, window_bytes = [], 0, 0, len(stream) if first else GZIP_WINDOW
    while not inflater.eof and size <= room:
        window = stream[read : read + window_bytes]
        window_bytes *= 2
        if not window:
            raise incomplete(name)
        try:
            data = inflater.decompress(window, room - size + 1)
        except zlib.error as err:
            raise (
                InvalidRequest(f"the body is not valid {name} data ({err})") if first else incomplete(name)
            ) from None
        parts.append(data)
        size += len(data)
        read += len(window) - len(inflater.unused_data)  # all of it, until the end of the stream
    return b"".join(parts), stream[read:]


def incomplete(name: str) -> InvalidRequest:
    return InvalidRequest(f"the body is not one complete {name} stream (truncated, or data after its end)")


def is_large(request: Request) -> bool:
    """Over LARGE_BODY_BYTES, or of unknown size (chunked). Bodiless GETs (probes, metadata) are
    small: they must never wait behind large requests."""
    if "content-length" not in request.headers:
        return "transfer-encoding" in request.headers
    declared = byte_count(request.headers["content-length"])
    return declared is None or declared > LARGE_BODY_BYTES


class App:
    """The ASGI application: every method and path goes to ``protocol`` (so that even an unknown
    method or route is a JSON 4xx), except /metrics. At most ``max_concurrency`` requests are in
    progress, from their headers received to their response sent; the one beyond gets a 503."""

    def __init__(
        self,
        protocol: RestAdapter,
        metrics: Metrics,
        max_body: int = MAX_BODY_BYTES,
        read_timeout: float = READ_TIMEOUT_SECONDS,
        log: bool = True,
        max_concurrency: int = MAX_CONCURRENCY,
        workers: int | None = None,  # None: the CPUs this process may use (``cpus``)
    ):
        self.protocol, self.metrics, self.max_body, self.read_timeout, self.log = (
            protocol,
            metrics,
            max_body,
            read_timeout,
            log,
        )
        self.max_concurrency = max_concurrency
        self.active = 0  # requests admitted and not yet answered
        self.large = asyncio.Semaphore(workers or available_cpus())
        self.stopping, self.stopped_at = False, 0.0  # set by begin_stop, from a shutdown signal
        self.reading: set[asyncio.Timeout] = set()  # the deadlines of the bodies being read

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":  # lifespan is off; websockets are not served
            return
        request = Request(scope, receive)
        path = request_path(request)
        if path in UNCOUNTED_PATHS:
            await self.serve(request, path, send)
        elif self.active >= self.max_concurrency:
            busy = Unavailable(f"the server is answering {self.max_concurrency} requests (--max-concurrency); retry")
            await self.serve(request, path, send, refusal=busy)
        else:
            self.active += 1
            try:
                await self.serve(request, path, send)
            finally:
                self.active -= 1

    async def serve(self, request: Request, path: str, send, refusal: ServingError | None = None) -> None:
        """Answer one request (with ``refusal`` if given), count and log it, and send the answer."""
        start = time.perf_counter()
        reply = error_reply(refusal) if refusal is not None else await self.reply(request, path)
        request_id = request_id_or_new(request.headers.get("x-request-id"))
        reply.headers["X-Request-ID"] = request_id
        if reply.status == 503:
            reply.headers["Retry-After"] = str(Unavailable.retry_after_seconds)
        if reply.status == 408:  # the rest of a late body must not be read as the next request
            reply.headers["Connection"] = "close"
        client = request.client.host if request.client else ""
        seconds = time.perf_counter() - start
        traced = trace_id(request.headers.get("traceparent"))
        self.record(
            AccessLine(
                "http", client, request.method, path, reply.status, reply.model, reply.rows, seconds, request_id, traced
            )
        )
        response = Response(reply.body, reply.status, headers=reply.headers, media_type=reply.content_type)
        await response(request.scope, request.receive, send)

    def record(self, line: AccessLine) -> None:
        """Count one answered request and log it; also the connection's own answers (431, ...)."""
        self.metrics.record("http", line.model, str(line.status), line.seconds, line.rows)
        if self.log:
            line.write()

    async def reply(self, request: Request, path: str) -> Reply:
        if path == "/metrics":
            return self.metrics_reply(request.method)
        if is_large(request):
            async with self.large:
                return await self.answer(request, path, in_thread=True)
        return await self.answer(request, path, in_thread=False)

    def metrics_reply(self, method: str) -> Reply:
        if method not in ("GET", "HEAD"):
            reply = error_reply(MethodNotAllowed(f"method {method} is not allowed here; use GET"))
            reply.headers["Allow"] = "GET, HEAD"
            return reply
        return Reply(200, generate_latest(self.metrics.registry), CONTENT_TYPE_LATEST)

    async def answer(self, request: Request, path: str, in_thread: bool) -> Reply:
        headers = {k.lower(): v for k, v in request.headers.items()}
        try:
            body = await self.body_or_shutdown(request)
            if in_thread:
                return await run_in_threadpool(self.handle, request.method, path, headers, body)
            return self.handle(request.method, path, headers, body)
        except ServingError as err:
            return error_reply(err)
        except ClientDisconnect:
            return error_reply(InvalidRequest("the client went away before sending the whole body"))

    def handle(self, method: str, path: str, headers: dict, body: bytes) -> Reply:
        try:
            body = decode(body, headers.get("content-encoding"), self.max_body)
        except ServingError as err:
            return error_reply(err)
        return self.protocol.handle(method, path, headers, body)

    async def body_or_shutdown(self, request: Request) -> bytes:
        """The body within the read timeout. Once the server starts shutting down, a body on its
        way gets STOP_BODY_SECONDS more, then a 503 (uvicorn would cancel it with a bare 500).
        One timer per read (asyncio.timeout), moved by ``begin_stop``: no task per request."""
        seconds = min(self.read_timeout, STOP_BODY_SECONDS) if self.stopping else self.read_timeout
        try:
            async with asyncio.timeout(seconds) as deadline:
                self.reading.add(deadline)
                try:
                    return await read_body(request, self.max_body)
                finally:
                    self.reading.discard(deadline)
        except TimeoutError:
            if self.stopping:
                raise Unavailable("the server is shutting down; retry on another replica") from None
            raise RequestTimeout(f"the body did not arrive within {self.read_timeout:g} s") from None

    def begin_stop(self) -> None:
        """A shutdown signal: bodies still arriving get STOP_BODY_SECONDS more at most."""
        loop = asyncio.get_running_loop()
        self.stopping, self.stopped_at = True, loop.time()
        for deadline in self.reading:
            when = deadline.when()
            if when is None or when > self.stopped_at + STOP_BODY_SECONDS:
                deadline.reschedule(self.stopped_at + STOP_BODY_SECONDS)


def listen(host: str, port: int) -> socket.socket:
    """The HTTP port, bound (uvicorn listens on it); one line when it is taken or not this
    machine's address."""
    # IPPROTO_TCP named, as getaddrinfo names it for uvicorn's own sockets: asyncio sets
    # TCP_NODELAY only on sockets that say so, and without it every keep-alive answer waits
    # 40 ms on Nagle and a delayed ACK (headers and body go out as two writes).
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
    try:
        sock.bind((host, port))
    except OSError as err:
        sock.close()
        raise UserError(f"cannot listen on {host}:{port} ({err.strerror}); pick another --port") from None
    return sock


def main(args: argparse.Namespace) -> int:
    """Serve until a shutdown signal; ``args`` as ``serving.options`` parses them."""
    plane = DataPlane(limits=Limits(max_rows=args.max_rows))
    protocol, metrics = RestAdapter(plane), Metrics()
    grpc = None
    if args.grpc_port:
        grpc = GrpcFrontEnd(
            plane,
            metrics,
            host=args.host,
            port=args.grpc_port,
            max_message_bytes=args.max_body_bytes,
            max_concurrency=args.max_concurrency,
            header_timeout=args.header_timeout,
            max_connections=CONNECTIONS_PER_REQUEST * args.max_concurrency,
            log=not args.no_access_log,
        )
    workers = args.workers or available_cpus()
    announce = {"port": args.port, "grpc_port": args.grpc_port, "workers": workers}
    loader = Loader(args.artifacts or config.artifacts_dir(), not args.no_verify_manifest, protocol, grpc, announce)
    app = App(
        protocol, metrics, args.max_body_bytes, args.read_timeout, not args.no_access_log, args.max_concurrency, workers
    )
    # Within the grace period, a body still arriving has been refused already (503).
    grace = max(SHUTDOWN_SECONDS - 1, 1)
    server = Server(
        uvicorn.Config(
            app,
            host=args.host,
            port=args.port,
            log_config=None,  # log_server_events: JSON lines, errors only
            log_level="error",
            access_log=False,
            lifespan="off",
            limit_concurrency=None,  # the app counts requests; idle connections are no requests
            timeout_keep_alive=KEEP_ALIVE_SECONDS,
            timeout_graceful_shutdown=grace,
            h11_max_incomplete_event_size=HEADER_BYTES,
            http=connection_class(args.header_timeout, CONNECTIONS_PER_REQUEST * args.max_concurrency, app.record),
        ),
        protocol,
        app,
        grpc,
        grace,
    )
    # A shutdown signal is the normal end of a server, not an interruption: uvicorn shuts down
    # gracefully, then re-raises the signal it caught into these handlers, which let it pass.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: None)
    signal.signal(signal.SIGHUP, server.handle_exit)  # uvicorn leaves SIGHUP alone: the same graceful stop
    log_server_events()
    listening = listen(args.host, args.port)  # here, not in uvicorn: its own failure is a log line and exit 3
    loader.server, server.loader = server, loader
    loader.start()
    try:
        server.run(sockets=[listening])
    finally:
        loader.join()  # an exit while onnxruntime is still loading a model aborts the process
        listening.close()
    if loader.error is not None:
        raise loader.error
    if not server.started:
        raise UserError(f"the server did not start on {args.host}:{args.port}; is the port free?")
    return 0
