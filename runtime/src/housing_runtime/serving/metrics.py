"""What the server tells operators: Prometheus counters and latency histograms (at /metrics),
one JSON access-log line per request on stderr, and uvicorn's and asyncio's own errors as JSON
lines there too, so that every line of stderr parses as JSON."""

from __future__ import annotations

import json
import logging
import sys
import time
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Histogram
from starlette.requests import Request

# The server's own events (what it serves once ready), at info: one JSON line each on stderr.
EVENTS = logging.getLogger("housing_runtime.serving")
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    """Request counts by protocol (http or grpc), model and status, a latency histogram, and
    rows predicted."""

    def __init__(self):
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "housing_requests",
            "Requests answered, by protocol (http, grpc), model and status (HTTP status or gRPC code name)",
            ["protocol", "model", "code"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "housing_request_duration_seconds",
            "Time to answer a request, in seconds",
            ["protocol", "model"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.rows = Counter("housing_rows_predicted", "Rows predicted", ["model"], registry=self.registry)
        # Each label set's series, found once: prometheus-client's labels() takes a lock and
        # checks its arguments on every call, a few microseconds a request. The label values
        # are bounded (the served models and "unknown", the statuses), and so is this cache.
        self.series: dict[tuple[str, str, str], tuple] = {}

    def record(self, protocol: str, model: str, code: str, seconds: float, rows: int = 0) -> None:
        key = (protocol, model, code)
        series = self.series.get(key)
        if series is None:
            series = (self.requests.labels(*key), self.latency.labels(protocol, model), self.rows.labels(model))
            self.series[key] = series
        requests, latency, predicted = series
        requests.inc()
        latency.observe(seconds)
        if rows:
            predicted.inc(rows)


@dataclass
class AccessLine:
    """One request as the access log tells it: one JSON line on stderr."""

    protocol: str  # "http" or "grpc"
    client: str
    method: str  # the HTTP method, or the gRPC method's name (ModelInfer)
    path: str  # the HTTP path, or the model's name over gRPC
    status: int | str  # the HTTP status, or the gRPC code's name
    model: str
    rows: int
    seconds: float
    request_id: str = ""
    trace_id: str = ""

    def write(self) -> None:
        line = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "protocol": self.protocol,
            "client": self.client,
            "method": self.method,
            "path": self.path,
            "status": self.status,
            "model": self.model,
            "rows": self.rows,
            "ms": round(self.seconds * 1000, 3),
        }
        if self.request_id:
            line["request_id"] = self.request_id
        if self.trace_id:
            line["trace_id"] = self.trace_id
        print(json.dumps(line), file=sys.stderr, flush=True)


def request_path(request: Request) -> str:
    """The path as sent, not percent-decoded (so /v2/models/a%2Fready is no route), and without
    the scheme and host of an absolute-form target (GET http://host/v2/...)."""
    return target_path(request.scope.get("raw_path") or request.url.path.encode())


def target_path(target: bytes) -> str:
    """The path of a request target as sent: no query, no scheme and host."""
    path = target.partition(b"?")[0].decode("latin-1")
    if path.startswith(("http://", "https://")):
        path = "/" + path.split("/", 3)[3] if path.count("/") >= 3 else "/"
    return path


class JsonLines(logging.Formatter):
    """A log record as one JSON line: time, level, logger, message (and a traceback, escaped)."""

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(record.created)),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        line.update(getattr(record, "fields", {}))  # logger.info(..., extra={"fields": {...}})
        if record.exc_info:
            line["traceback"] = self.formatException(record.exc_info)
        return json.dumps(line)


def log_server_events(loggers: tuple[str, ...] = ("uvicorn", "asyncio", EVENTS.name)) -> None:
    """Errors of uvicorn and asyncio (a bug in the app, a port taken), and the server's own
    events (``EVENTS``), as JSON lines on stderr. uvicorn's and asyncio's warnings are about
    single requests, which the access log already tells, in JSON: uvicorn's "Invalid HTTP
    request received" is a 400 line there."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonLines())
    for name in loggers:
        logger = logging.getLogger(name)
        logger.handlers = [handler]
        logger.propagate = False  # not to the root logger's plain text
        logger.setLevel(logging.INFO if logger is EVENTS else logging.ERROR)
