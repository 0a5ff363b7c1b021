"""Request correlation, the same over HTTP and gRPC: a request id (``X-Request-ID`` header or
``x-request-id`` metadata, echoed, or made when absent) and a W3C ``traceparent``'s trace id,
both told in the access-log line so that a request can be followed through a mesh.

What the client sends lands in logs, so only a bounded, printable id is kept: anything else is
replaced with a fresh one, and a malformed traceparent is ignored (as W3C Trace Context says).
"""

from __future__ import annotations

import re
import uuid

MAX_REQUEST_ID_CHARS = 128
REQUEST_ID = re.compile(rf"[\x21-\x7e]{{1,{MAX_REQUEST_ID_CHARS}}}")  # visible ASCII, no spaces
# version "00" - 32 hex trace id - 16 hex parent id - 2 hex flags; an all-zero id is invalid.
TRACEPARENT = re.compile(r"00-(?P<trace>[0-9a-f]{32})-(?P<parent>[0-9a-f]{16})-[0-9a-f]{2}")


def request_id_or_new(sent: str | None) -> str:
    """The client's request id when it is one, else a new one (32 hex digits)."""
    if sent is not None and REQUEST_ID.fullmatch(sent):
        return sent
    return uuid.uuid4().hex


def trace_id(traceparent: str | None) -> str:
    """The trace id of a valid W3C traceparent, else ""."""
    match = TRACEPARENT.fullmatch(traceparent.strip()) if traceparent else None
    if match is None or set(match["trace"]) == {"0"} or set(match["parent"]) == {"0"}:
        return ""
    return match["trace"]
