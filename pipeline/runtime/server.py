"""`python -m pipeline.runtime serve`: the three models over KServe V2 (and V1), on uvicorn.

The protocol is ``protocol``'s; this module moves bytes and owns what HTTP adds: the body
limit and read timeout, content encodings, metrics (Prometheus text at /metrics), one JSON
access-log line per request on stderr, and a clean shutdown.

- Every model is loaded, checked against the manifest's sha256 and warmed up before the port
  opens: a bad artifact is one line and exit 2, never a server that answers 500.
- SIGTERM (or SIGINT): readiness turns false (503), no new connections are accepted, requests
  in flight are answered, and the process exits within SHUTDOWN_SECONDS.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import math
import signal
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import uvicorn
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route

from pipeline import config
from pipeline.errors import OneLineArgumentParser, UserError
from pipeline.runtime import integrity
from pipeline.runtime.model import Predictor, model_path
from pipeline.runtime.protocol import Limits, Model, Protocol, ProtocolError, Reply, error_reply

DEFAULT_HOST, DEFAULT_PORT = "0.0.0.0", 8080
MAX_BODY_BYTES = 64 << 20
READ_TIMEOUT_SECONDS = 30.0
MAX_CONCURRENCY = 64
KEEP_ALIVE_SECONDS = 5
SHUTDOWN_SECONDS = 10
METHODS = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"]
ENCODINGS = ("gzip", "deflate")
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    """Request counts by model and status, a latency histogram, and rows predicted."""

    def __init__(self):
        self.registry = CollectorRegistry()
        self.requests = Counter("housing_requests", "Requests answered, by model and HTTP status",
                                ["model", "code"], registry=self.registry)
        self.latency = Histogram("housing_request_duration_seconds", "Time to answer a request, in seconds",
                                 ["model"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.rows = Counter("housing_rows_predicted", "Rows predicted", ["model"], registry=self.registry)

    def record(self, reply: Reply, seconds: float) -> None:
        self.requests.labels(reply.model, str(reply.status)).inc()
        self.latency.labels(reply.model).observe(seconds)
        if reply.rows:
            self.rows.labels(reply.model).inc(reply.rows)


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refused past ``limit`` bytes (413) before it is all read where possible."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise ProtocolError(413, f"the body is {int(declared)} bytes, over the limit of {limit}; split the request")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ProtocolError(413, f"the body is over the limit of {limit} bytes; split the request")
        chunks.append(chunk)
    return b"".join(chunks)


def decode(body: bytes, encoding: str | None, limit: int) -> bytes:
    """The body without its Content-Encoding (gzip or deflate), refused past ``limit`` bytes."""
    if encoding is None or encoding.strip().lower() in ("", "identity"):
        return body
    name = encoding.strip().lower()
    if name not in ENCODINGS:
        raise ProtocolError(415, f"Content-Encoding {encoding!r} is not supported; send gzip, deflate or none")
    inflater = zlib.decompressobj(wbits=31 if name == "gzip" else 15)
    try:
        data = inflater.decompress(body, limit + 1)
    except zlib.error as err:
        raise ProtocolError(400, f"the body is not valid {name} data ({err})") from None
    if len(data) > limit or inflater.unconsumed_tail:
        raise ProtocolError(413, f"the body inflates to over the limit of {limit} bytes; split the request")
    return data


def access_log(request: Request, reply: Reply, seconds: float) -> None:
    client = request.client.host if request.client else ""
    line = {"time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "client": client,
            "method": request.method, "path": request.url.path, "status": reply.status,
            "model": reply.model, "rows": reply.rows, "ms": round(seconds * 1000, 3)}
    print(json.dumps(line), file=sys.stderr, flush=True)


def build_app(protocol: Protocol, metrics: Metrics, max_body: int = MAX_BODY_BYTES,
              read_timeout: float = READ_TIMEOUT_SECONDS, log: bool = True) -> Starlette:
    async def endpoint(request: Request) -> Response:
        start = time.perf_counter()
        path = request.url.path
        if path == "/metrics" and request.method == "GET":
            return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)
        headers = {k.lower(): v for k, v in request.headers.items()}
        try:
            body = await asyncio.wait_for(read_body(request, max_body), read_timeout)
            body = decode(body, headers.get("content-encoding"), max_body)
            reply = protocol.handle(request.method, path, headers, body)
        except ProtocolError as err:
            reply = error_reply(err)
        except TimeoutError:
            reply = error_reply(ProtocolError(408, f"the body did not arrive within {read_timeout:g} s"))
        except ClientDisconnect:
            reply = error_reply(ProtocolError(400, "the client went away before sending the whole body"))
        seconds = time.perf_counter() - start
        metrics.record(reply, seconds)
        if log:
            access_log(request, reply, seconds)
        return Response(reply.body, reply.status, headers=reply.headers, media_type=reply.content_type)

    return Starlette(routes=[Route("/{path:path}", endpoint, methods=METHODS)])


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


class Server(uvicorn.Server):
    """uvicorn's server, with readiness false from the first shutdown signal."""

    def __init__(self, config_: uvicorn.Config, protocol: Protocol):
        super().__init__(config_)
        self.protocol = protocol

    def handle_exit(self, sig, frame) -> None:
        self.protocol.ready = False
        super().handle_exit(sig, frame)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = OneLineArgumentParser(prog="pipeline.runtime serve",
                                   description="Serve the three models over KServe V2 (and V1) HTTP.")
    parser.add_argument("--host", default=DEFAULT_HOST, help="address to listen on (default: %(default)s)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="port (default: %(default)s)")
    parser.add_argument("--artifacts", type=Path, default=None, metavar="DIR",
                        help="folder with the models and manifest.json (default: $ARTIFACTS or ./artifacts)")
    parser.add_argument("--no-verify-manifest", action="store_true",
                        help="skip checking each model's sha256 against manifest.json")
    parser.add_argument("--max-body-bytes", type=int, default=MAX_BODY_BYTES,
                        help="largest request body, after decoding (default: %(default)s: 64 MiB)")
    parser.add_argument("--max-rows", type=int, default=Limits.max_rows,
                        help="most rows per request (default: %(default)s)")
    parser.add_argument("--max-concurrency", type=int, default=MAX_CONCURRENCY,
                        help="connections served at once; more get 503 (default: %(default)s)")
    parser.add_argument("--read-timeout", type=float, default=READ_TIMEOUT_SECONDS,
                        help="seconds a request body may take to arrive (default: %(default)s)")
    parser.add_argument("--no-access-log", action="store_true", help="no JSON line per request on stderr")
    args = parser.parse_args(argv)
    if not 0 <= args.port <= 65535:
        parser.error(f"--port {args.port} is not a port number (0 to 65535)")
    for name in ("max_body_bytes", "max_rows", "max_concurrency"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if not (math.isfinite(args.read_timeout) and args.read_timeout > 0):
        parser.error("--read-timeout must be a positive number of seconds")
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    models = load_models(args.artifacts or config.artifacts_dir(), not args.no_verify_manifest)
    protocol = Protocol(models, Limits(max_rows=args.max_rows))
    app = build_app(protocol, Metrics(), args.max_body_bytes, args.read_timeout, not args.no_access_log)
    server = Server(uvicorn.Config(app, host=args.host, port=args.port, log_level="warning", access_log=False,
                                   lifespan="off", limit_concurrency=args.max_concurrency,
                                   timeout_keep_alive=KEEP_ALIVE_SECONDS,
                                   timeout_graceful_shutdown=SHUTDOWN_SECONDS, http="h11"), protocol)
    # A shutdown signal is the normal end of a server, not an interruption: uvicorn shuts down
    # gracefully, then re-raises the signal it caught into these handlers, which let it pass.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: None)
    signal.signal(signal.SIGHUP, server.handle_exit)  # uvicorn leaves SIGHUP alone: the same graceful stop
    try:
        server.run()
    except OSError as err:  # the port is taken, or the address is not this machine's
        raise UserError(f"cannot listen on {args.host}:{args.port} ({err.strerror}); pick another --port") from None
    if not server.started:
        raise UserError(f"the server did not start on {args.host}:{args.port}; is the port free?")
    return 0
