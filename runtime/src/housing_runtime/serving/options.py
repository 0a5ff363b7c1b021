"""`housing-runtime serve`'s options and their defaults. Standard library only, so that the
command line can parse and check them, and say which extra to install, before the server's
stack (Starlette, uvicorn, prometheus-client) is imported."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

DEFAULT_HOST, DEFAULT_PORT, DEFAULT_GRPC_PORT = "0.0.0.0", 8080, 8081
MAX_BODY_BYTES = 64 << 20
MAX_ROWS = 1_000_000
READ_TIMEOUT_SECONDS = 30.0
HEADER_TIMEOUT_SECONDS = 10.0
MAX_CONCURRENCY = 64


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default=DEFAULT_HOST, help="address to listen on (default: %(default)s)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="HTTP port (default: %(default)s)")
    parser.add_argument(
        "--grpc-port",
        type=int,
        default=DEFAULT_GRPC_PORT,
        help="gRPC port, V2's inference.GRPCInferenceService and grpc.health.v1 (default: %(default)s; 0: no gRPC)",
    )
    parser.add_argument(
        "--artifacts",
        type=Path,
        default=None,
        metavar="DIR",
        help="folder with the models and manifest.json (default: $ARTIFACTS or ./artifacts)",
    )
    parser.add_argument(
        "--no-verify-manifest", action="store_true", help="skip checking each model's sha256 against manifest.json"
    )
    parser.add_argument(
        "--max-body-bytes",
        type=int,
        default=MAX_BODY_BYTES,
        help="largest request body, after decoding (default: %(default)s: 64 MiB)",
    )
    parser.add_argument("--max-rows", type=int, default=MAX_ROWS, help="most rows per request (default: %(default)s)")
    parser.add_argument(
        "--max-concurrency",
        type=int,
        default=MAX_CONCURRENCY,
        help=(
            "requests in progress at once, on HTTP and on gRPC each (idle connections are not "
            "requests); over HTTP, one more gets 503 with Retry-After (default: %(default)s)"
        ),
    )
    parser.add_argument(
        "--read-timeout",
        type=float,
        default=READ_TIMEOUT_SECONDS,
        help="seconds a request body may take to arrive (default: %(default)s)",
    )
    parser.add_argument(
        "--header-timeout",
        type=float,
        default=HEADER_TIMEOUT_SECONDS,
        help="seconds a request's line and headers may take to arrive (default: %(default)s)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        metavar="N",
        help=(
            "threads that decode and predict large requests (over 1 MiB), N at a time (default: "
            "the container's CPU limit, rounded up, else the CPUs this process may run on)"
        ),
    )
    parser.add_argument("--no-access-log", action="store_true", help="no JSON line per request on stderr")


def check(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Refuse values no server could use, with the option's name (parser.error: one line)."""
    if not 0 <= args.port <= 65535:
        parser.error(f"--port {args.port} is not a port number (0 to 65535)")
    if not 0 <= args.grpc_port <= 65535:
        parser.error(f"--grpc-port {args.grpc_port} is not a port number (1 to 65535, or 0 for no gRPC)")
    if args.grpc_port and args.grpc_port == args.port:
        parser.error(f"--grpc-port {args.grpc_port} is --port too; give gRPC a port of its own (or 0 for none)")
    for name in ("max_body_bytes", "max_rows", "max_concurrency", "workers"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    for name in ("read_timeout", "header_timeout"):
        if not (math.isfinite(getattr(args, name)) and getattr(args, name) > 0):
            parser.error(f"--{name.replace('_', '-')} must be a positive number of seconds")
