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
import json
import signal
import sys
import threading
import time
import zlib
from pathlib import Path

import h11
import numpy as np
import uvicorn
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from uvicorn.protocols.http.h11_impl import H11Protocol

from housing_runtime import config, integrity
from housing_runtime.errors import UserError
from housing_runtime.model import Predictor, model_path
from housing_runtime.serving.options import MAX_BODY_BYTES, READ_TIMEOUT_SECONDS
from housing_runtime.serving.protocol import Limits, Model, Protocol, ProtocolError, Reply, byte_count, error_reply

# After a shutdown signal, a body still arriving gets this long (within SHUTDOWN_SECONDS).
STOP_BODY_SECONDS = 5.0
# Bodies over this many bytes are large: read and handled LARGE_AT_ONCE at a time, in a thread.
LARGE_BODY_BYTES = 1 << 20
LARGE_AT_ONCE = 2
KEEP_ALIVE_SECONDS = 5
SHUTDOWN_SECONDS = 10
ENCODINGS = ("gzip", "deflate")
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    """Request counts by model and status, a latency histogram, and rows predicted."""

    def __init__(self):
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "housing_requests", "Requests answered, by model and HTTP status", ["model", "code"], registry=self.registry
        )
        self.latency = Histogram(
            "housing_request_duration_seconds",
            "Time to answer a request, in seconds",
            ["model"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.rows = Counter("housing_rows_predicted", "Rows predicted", ["model"], registry=self.registry)

    def record(self, reply: Reply, seconds: float) -> None:
        self.requests.labels(reply.model, str(reply.status)).inc()
        self.latency.labels(reply.model).observe(seconds)
        if reply.rows:
            self.rows.labels(reply.model).inc(reply.rows)


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refused past ``limit`` bytes (413) before it is all read where possible."""
    declared = byte_count(request.headers.get("content-length"))
    if declared is not None and declared > limit:
        raise ProtocolError(413, f"the body is {declared} bytes, over the limit of {limit}; split the request")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ProtocolError(413, f"the body is over the limit of {limit} bytes; split the request")
        chunks.append(chunk)
    return b"".join(chunks)


def decode(body: bytes, encoding: str | None, limit: int) -> bytes:
    """The body without its Content-Encoding (gzip or deflate), refused past ``limit`` bytes."""
    name = (encoding or "").strip().lower()
    if name in ("", "identity"):
        return body
    if name not in ENCODINGS:
        raise ProtocolError(415, f"Content-Encoding {encoding!r} is not supported; send gzip, deflate or none")
    inflater = zlib.decompressobj(wbits=31 if name == "gzip" else 15)
    try:
        data = inflater.decompress(body, limit + 1)
    except zlib.error as err:
        raise ProtocolError(400, f"the body is not valid {name} data ({err})") from None
    if len(data) > limit or inflater.unconsumed_tail:
        raise ProtocolError(413, f"the body inflates to over the limit of {limit} bytes; split the request")
    if not inflater.eof or inflater.unused_data:
        raise ProtocolError(400, f"the body is not one complete {name} stream (truncated, or data after its end)")
    return data


def access_log(request: Request, path: str, reply: Reply, seconds: float) -> None:
    client = request.client.host if request.client else ""
    line = {
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "client": client,
        "method": request.method,
        "path": path,
        "status": reply.status,
        "model": reply.model,
        "rows": reply.rows,
        "ms": round(seconds * 1000, 3),
    }
    print(json.dumps(line), file=sys.stderr, flush=True)


def request_path(request: Request) -> str:
    """The path as sent, not percent-decoded (so /v2/models/a%2Fready is no route), and without
    the scheme and host of an absolute-form target (GET http://host/v2/...)."""
    raw = request.scope.get("raw_path") or request.url.path.encode()
    path = raw.decode("latin-1")
    if path.startswith(("http://", "https://")):
        path = "/" + path.split("/", 3)[3] if path.count("/") >= 3 else "/"
    return path


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
        protocol: Protocol,
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
        self.metrics.record(reply, seconds)
        if self.log:
            access_log(request, path, reply, seconds)
        response = Response(reply.body, reply.status, headers=reply.headers, media_type=reply.content_type)
        await response(scope, receive, send)

    async def answer(self, request: Request, path: str, in_thread: bool) -> Reply:
        headers = {k.lower(): v for k, v in request.headers.items()}
        try:
            body = await self.body_or_shutdown(request)
            if in_thread:
                return await run_in_threadpool(self.handle, request.method, path, headers, body)
            return self.handle(request.method, path, headers, body)
        except ProtocolError as err:
            return error_reply(err)
        except ClientDisconnect:
            return error_reply(ProtocolError(400, "the client went away before sending the whole body"))

    def handle(self, method: str, path: str, headers: dict, body: bytes) -> Reply:
        try:
            body = decode(body, headers.get("content-encoding"), self.max_body)
        except ProtocolError as err:
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
                    raise ProtocolError(503, "the server is shutting down; retry on another replica")
            if reading in done:
                return reading.result()
            raise ProtocolError(408, f"the body did not arrive within {self.read_timeout:g} s")
        finally:
            stopping.cancel()
            reading.cancel()


def load_models(artifacts: Path, verify: bool) -> dict[str, Model]:
    """Every variant, checked against the manifest and warmed up with one prediction."""
    models = {}
    for variant in config.MODEL_VARIANTS:
        path = model_path(artifacts, variant)
        if verify:
            integrity.check_file(artifacts / config.MANIFEST_NAME, path)
        predictor = Predictor(path)
        predictor.predict(np.zeros((1, config.N_FEATURES), np.float32))
        models[variant] = Model(variant, predictor)
    return models


def header_timeout_protocol(seconds: float) -> type:
    """uvicorn's h11 protocol, closing a connection that has not sent a whole request line and
    headers within ``seconds`` of opening (or of its last response): uvicorn itself waits
    forever, so idle sockets could hold every connection slot."""

    class HeaderTimeoutProtocol(H11Protocol):
        def connection_made(self, transport) -> None:
            super().connection_made(transport)
            self.header_timer = self.loop.call_later(seconds, self.header_timeout)

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self.header_timer.cancel()
            self.header_timer = self.loop.call_later(seconds, self.header_timeout)

        def connection_lost(self, exc) -> None:
            self.header_timer.cancel()
            super().connection_lost(exc)

        def send_400_response(self, msg: str) -> None:
            """Bytes that are not HTTP: the same JSON error as every other 4xx, not uvicorn's text."""
            body = json.dumps({"error": f"the request is not valid HTTP/1.1 ({msg.rstrip('.')})"}).encode()
            headers = [
                (b"content-type", b"application/json"),
                (b"connection", b"close"),
                (b"content-length", str(len(body)).encode()),
            ]
            for event in (
                h11.Response(status_code=400, headers=headers, reason=b"Bad Request"),
                h11.Data(data=body),
                h11.EndOfMessage(),
            ):
                self.transport.write(self.conn.send(event))
            self.transport.close()

        def header_timeout(self) -> None:
            in_request = self.cycle is not None and not self.cycle.response_complete
            if not in_request and not self.transport.is_closing():
                self.transport.close()

    return HeaderTimeoutProtocol


class Server(uvicorn.Server):
    """uvicorn's server, with readiness false and bodies still arriving refused (503) from the
    first shutdown signal."""

    def __init__(self, config_: uvicorn.Config, protocol: Protocol, app: App):
        super().__init__(config_)
        self.protocol, self.app = protocol, app

    def handle_exit(self, sig, frame) -> None:
        self.protocol.stopping = True
        try:
            asyncio.get_running_loop().call_soon_threadsafe(self.app.stopping.set)
        except RuntimeError:  # no loop yet: nothing is in flight
            pass
        super().handle_exit(sig, frame)


class Loader(threading.Thread):
    """Loads the models beside the serving loop: readiness is 503 until it is done. A bad
    artifact is kept as ``error`` and stops the server, whose caller then reports it."""

    def __init__(self, artifacts: Path, verify: bool, protocol: Protocol):
        super().__init__(name="model-loader", daemon=True)
        self.artifacts, self.verify, self.protocol = artifacts, verify, protocol
        self.server: Server | None = None
        self.error: UserError | None = None

    def run(self) -> None:
        try:
            self.protocol.load(load_models(self.artifacts, self.verify))
        except UserError as err:
            self.error = err
            if self.server is not None:
                self.server.should_exit = True


def main(args: argparse.Namespace) -> int:
    """Serve until a shutdown signal; ``args`` as ``serving.options`` parses them."""
    protocol = Protocol(limits=Limits(max_rows=args.max_rows))
    loader = Loader(args.artifacts or config.artifacts_dir(), not args.no_verify_manifest, protocol)
    app = App(protocol, Metrics(), args.max_body_bytes, args.read_timeout, not args.no_access_log)
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
