"""What the server tells operators: Prometheus counters and latency histograms (at /metrics),
and one JSON access-log line per request on stderr."""

from __future__ import annotations

import json
import sys
import time

from prometheus_client import CollectorRegistry, Counter, Histogram
from starlette.requests import Request

from housing_runtime.serving.messages import Reply

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
