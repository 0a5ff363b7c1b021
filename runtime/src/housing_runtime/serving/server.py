"""`python -m housing_runtime serve`: the three models over KServe V2 (and V1), on uvicorn.

The protocol is ``protocol``'s; this module moves bytes and owns what HTTP adds: the body
limit and read timeout, content encodings, metrics (Prometheus text at /metrics), one JSON
access-log line per request on stderr, and a clean shutdown.

- Every model is checked against the manifest's sha256, loaded and warmed up while the port is
  already open and readiness answers 503; a bad artifact then stops the server with one line
  and exit 2, never a server that answers 500.
- SIGTERM (or SIGINT): readiness turns false (503), no new connections are accepted, requests
  in flight are answered (a body that has not arrived STOP_BODY_SECONDS later gets a 503),
  and the process exits within SHUTDOWN_SECONDS.
- Slow or idle clients cannot hold the bounded connection slots: a request's line and headers
  must arrive within the header timeout, its body within the read timeout.
- Large requests are decoded and predicted off the event loop, a few at a time (probes stay
  answered, and memory stays bounded by LARGE_AT_ONCE bodies); small ones inline, which is
  faster than a thread hop.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import time
import zlib

import uvicorn
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from housing_runtime import config
from housing_runtime.errors import UserError
from housing_runtime.serving.dataplane import DataPlane
from housing_runtime.serving.errors import (
    InvalidRequest,
    RequestTimeout,
    ServingError,
    TooLarge,
    Unavailable,
    UnsupportedEncoding,
)
from housing_runtime.serving.grpc_service import GrpcFrontEnd
from housing_runtime.serving.lifecycle import Loader, Server, header_timeout_protocol
from housing_runtime.serving.messages import Limits, Reply, error_reply
from housing_runtime.serving.metrics import AccessLine, Metrics, request_path
from housing_runtime.serving.options import MAX_BODY_BYTES, READ_TIMEOUT_SECONDS
from housing_runtime.serving.rest import RestAdapter
from housing_runtime.serving.tensors import byte_count

# After a shutdown signal, a body still arriving gets this long (within SHUTDOWN_SECONDS).
STOP_BODY_SECONDS = 5.0
# Bodies over this many bytes are large: read and handled LARGE_AT_ONCE at a time, in a thread.
LARGE_BODY_BYTES = 1 << 20
LARGE_AT_ONCE = 2
KEEP_ALIVE_SECONDS = 5
SHUTDOWN_SECONDS = 10
ENCODINGS = ("gzip", "deflate")


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
    """The body without its Content-Encoding (gzip or deflate), refused past ``limit`` bytes."""
    name = (encoding or "").strip().lower()
    if name in ("", "identity"):
        return body
    if name not in ENCODINGS:
        raise UnsupportedEncoding(f"Content-Encoding {encoding!r} is not supported; send gzip, deflate or none")
    inflater = zlib.decompressobj(wbits=31 if name == "gzip" else 15)
    try:
        data = inflater.decompress(body, limit + 1)
    except zlib.error as err:
        raise InvalidRequest(f"the body is not valid {name} data ({err})") from None
    if len(data) > limit or inflater.unconsumed_tail:
        raise TooLarge(f"the body inflates to over the limit of {limit} bytes; split the request")
    if not inflater.eof or inflater.unused_data:
        raise InvalidRequest(f"the body is not one complete {name} stream (truncated, or data after its end)")
    return data


def is_large(request: Request) -> bool:
    """Over LARGE_BODY_BYTES, or of unknown size (chunked). Bodiless GETs (probes, metadata) are
    small: they must never wait behind large requests."""
    if "content-length" not in request.headers:
        return "transfer-encoding" in request.headers
    declared = byte_count(request.headers["content-length"])
    return declared is None or declared > LARGE_BODY_BYTES


class App:
    """The ASGI application: every method and path goes to ``protocol`` (so that even an unknown
    method or route is a JSON 4xx), except GET /metrics."""

    def __init__(
        self,
        protocol: RestAdapter,
        metrics: Metrics,
        max_body: int = MAX_BODY_BYTES,
        read_timeout: float = READ_TIMEOUT_SECONDS,
        log: bool = True,
    ):
        self.protocol, self.metrics, self.max_body, self.read_timeout, self.log = (
            protocol,
            metrics,
            max_body,
            read_timeout,
            log,
        )
        self.large = asyncio.Semaphore(LARGE_AT_ONCE)
        self.stopping = asyncio.Event()

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":  # lifespan is off; websockets are not served
            return
        request = Request(scope, receive)
        start = time.perf_counter()
        path = request_path(request)
        if path == "/metrics" and request.method in ("GET", "HEAD"):
            response = Response(generate_latest(self.metrics.registry), media_type=CONTENT_TYPE_LATEST)
            await response(scope, receive, send)
            return
        if is_large(request):
            async with self.large:
                reply = await self.answer(request, path, in_thread=True)
        else:
            reply = await self.answer(request, path, in_thread=False)
        seconds = time.perf_counter() - start
        self.metrics.record("http", reply.model, str(reply.status), seconds, reply.rows)
        if self.log:
            client = request.client.host if request.client else ""
            AccessLine("http", client, request.method, path, reply.status, reply.model, reply.rows, seconds).write()
        response = Response(reply.body, reply.status, headers=reply.headers, media_type=reply.content_type)
        await response(scope, receive, send)

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
        way gets STOP_BODY_SECONDS more, then a 503 (uvicorn would cancel it with a bare 500)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.read_timeout
        reading = asyncio.ensure_future(read_body(request, self.max_body))
        stopping = asyncio.ensure_future(self.stopping.wait())
        try:
            done, _ = await asyncio.wait(
                {reading, stopping}, timeout=self.read_timeout, return_when=asyncio.FIRST_COMPLETED
            )
            if reading not in done and stopping in done:
                remaining = min(deadline - loop.time(), STOP_BODY_SECONDS)
                done, _ = await asyncio.wait({reading}, timeout=max(remaining, 0.0))
                if reading not in done:
                    raise Unavailable("the server is shutting down; retry on another replica")
            if reading in done:
                return reading.result()
            raise RequestTimeout(f"the body did not arrive within {self.read_timeout:g} s")
        finally:
            stopping.cancel()
            reading.cancel()


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
            log=not args.no_access_log,
        )
    loader = Loader(args.artifacts or config.artifacts_dir(), not args.no_verify_manifest, protocol, grpc)
    app = App(protocol, metrics, args.max_body_bytes, args.read_timeout, not args.no_access_log)
    # Within the grace period, a body still arriving has been refused already (503).
    grace = max(SHUTDOWN_SECONDS - 1, 1)
    server = Server(
        uvicorn.Config(
            app,
            host=args.host,
            port=args.port,
            log_level="warning",
            access_log=False,
            lifespan="off",
            limit_concurrency=args.max_concurrency,
            timeout_keep_alive=KEEP_ALIVE_SECONDS,
            timeout_graceful_shutdown=grace,
            http=header_timeout_protocol(args.header_timeout),
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
    loader.server = server
    loader.start()
    try:
        server.run()
    except OSError as err:  # the port is taken, or the address is not this machine's
        raise UserError(f"cannot listen on {args.host}:{args.port} ({err.strerror}); pick another --port") from None
    loader.join()
    if loader.error is not None:
        raise loader.error
    if not server.started:
        raise UserError(f"the server did not start on {args.host}:{args.port}; is the port free?")
    return 0
