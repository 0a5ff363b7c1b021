"""The HTTP/1.1 connection under the app: what is checked before a request reaches it, or when
no request can. uvicorn has no hook for any of this, so ``connection_class`` subclasses
uvicorn's private ``H11Protocol`` (and h11's ``Connection``). This is the one module that
touches either; tests/runtime/test_http_hardening.py fails loudly if a name used here changes.

- The line and headers of a request must arrive within the header timeout of the connection
  opening, or of its last response; uvicorn alone waits forever. A silent socket is closed; one
  that sent part of a request gets a 408.
- The request line and headers: at most HEADER_BYTES bytes and MAX_HEADERS fields, the same
  however the bytes arrive (h11 alone limits only a head that arrives in pieces): else 431.
- HTTP/1.x only (an HTTP/9.9 request line is not answered as 1.1): else 505.
- Content-Length and Transfer-Encoding together, in either order, or Transfer-Encoding in an
  HTTP/1.0 request: a 400 and the connection closed, so nothing hidden after the body is ever
  read as a second request (request smuggling, RFC 9112 section 6.1).
- Bytes that are not HTTP: a JSON 400, not uvicorn's plain text.
- More than ``max_connections`` open connections: the newest gets a 503 at once.

Each of these answers is JSON with the request's X-Request-ID and ``Connection: close``, and
gets one access-log line. The connection then reads and drops what the client still sends,
for up to LINGER_SECONDS: closing on unread bytes would reset it and lose the answer.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from http import HTTPStatus

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from housing_runtime.serving.correlation import request_id_or_new, trace_id
from housing_runtime.serving.errors import (
    HeadersTooLarge,
    InvalidRequest,
    RequestTimeout,
    ServingError,
    Unavailable,
    VersionNotSupported,
)
from housing_runtime.serving.messages import JSON_TYPE, error_reply
from housing_runtime.serving.metrics import AccessLine, target_path

# nginx's and Node's default is 8 KiB and Apache's 8 KiB a line: twice that leaves room for
# tokens and tracing headers, and still bounds what one connection may buffer before its app.
HEADER_BYTES = 16 << 10
MAX_HEADERS = 100  # Apache's default; a real client sends about 10
LINGER_SECONDS = 2.0
ERROR_SUMMARY_CHARS = 120  # of h11's words on a malformed request, which may quote its bytes


class CheckedConnection(h11.Connection):
    """h11's server side, also refusing what h11 accepts and this server does not: each refusal
    is raised as h11's RemoteProtocolError (which uvicorn answers through ``send_400_response``)
    and kept as ``refusal``, the ServingError to answer with."""

    def __init__(self) -> None:
        super().__init__(h11.SERVER, max_incomplete_event_size=HEADER_BYTES)
        self.request: h11.Request | None = None  # the head being answered, for the access log
        self.refusal: ServingError | None = None

    def next_event(self):  # h11's own annotation names a private type
        waiting = self.their_state is h11.IDLE
        if waiting:
            self.request = None
        buffered = len(self._receive_buffer)  # O(1); h11's public trailing_data copies it
        try:
            event = super().next_event()
        except h11.RemoteProtocolError as err:
            self.refusal = self.refusal or from_h11(err)
            raise
        if waiting and isinstance(event, h11.Request):
            self.request = event
            self.refusal = check_head(event, buffered - len(self._receive_buffer))
            if self.refusal is not None:
                raise h11.RemoteProtocolError(str(self.refusal), self.refusal.http_status)
        return event


def from_h11(err: h11.RemoteProtocolError) -> ServingError:
    if err.error_status_hint == 431:  # h11's buffer of an incomplete head is full
        return HeadersTooLarge(f"the request line and headers are over {HEADER_BYTES} bytes; send fewer or shorter")
    words = str(err)
    if len(words) > ERROR_SUMMARY_CHARS:
        words = words[:ERROR_SUMMARY_CHARS] + "..."
    return InvalidRequest(f"the request is not valid HTTP/1.1 ({words})")


def check_head(request: h11.Request, size: int) -> ServingError | None:
    """Why this request line and headers (``size`` bytes as sent) are refused, or None."""
    if size > HEADER_BYTES:
        return HeadersTooLarge(
            f"the request line and headers are {size} bytes, over the limit of {HEADER_BYTES}; send fewer or shorter"
        )
    if len(request.headers) > MAX_HEADERS:
        return HeadersTooLarge(
            f"the request has {len(request.headers)} header fields, over the limit of {MAX_HEADERS}; send fewer"
        )
    version = request.http_version.decode("ascii")
    if not version.startswith("1."):
        return VersionNotSupported(f"HTTP/{version} is not served; send HTTP/1.1 (or 1.0)")
    names = {name for name, _ in request.headers}  # h11 lowercases them
    if b"transfer-encoding" in names and b"content-length" in names:
        return InvalidRequest(
            "the request has both Content-Length and Transfer-Encoding, so its end is ambiguous; send one"
        )
    if b"transfer-encoding" in names and version == "1.0":
        return InvalidRequest("HTTP/1.0 has no Transfer-Encoding; send Content-Length, or HTTP/1.1")
    return None


def header(request: h11.Request | None, name: bytes) -> str | None:
    """The first value of a header of ``request`` (h11 lowercases names), as text."""
    for key, value in request.headers if request is not None else ():
        if key == name:
            return value.decode("latin-1")
    return None


def connection_class(
    header_timeout: float, max_connections: int, record: Callable[[AccessLine], None]
) -> type[H11Protocol]:
    """uvicorn's h11 protocol with this module's checks; ``record`` counts and logs each request
    the connection answers itself (the app's ``record``)."""

    class Connection(H11Protocol):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            self.checked = CheckedConnection()
            self.conn = self.checked  # what uvicorn parses with
            self.timer: asyncio.TimerHandle | None = None  # the header timeout, or the linger's end
            self.head_started: float | None = None  # when a request's first bytes arrived
            self.lingering = False

        def connection_made(self, transport) -> None:
            super().connection_made(transport)
            if len(self.connections) > max_connections:
                self.refuse(Unavailable(f"the server has {max_connections} connections open; retry shortly"))
                return
            self.start_header_timer()

        def data_received(self, data: bytes) -> None:
            if self.lingering:  # the answer is sent: what follows is read only to be dropped
                return
            if self.head_started is None and self.conn.their_state is h11.IDLE:
                self.head_started = time.perf_counter()
            super().data_received(data)

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self.head_started = None
            if not self.lingering:
                self.start_header_timer()

        def connection_lost(self, exc) -> None:
            self.cancel_timer()
            super().connection_lost(exc)

        def shutdown(self) -> None:
            if self.lingering:  # already answered; h11's state may not allow uvicorn's close
                self.transport.close()
                return
            super().shutdown()

        def send_400_response(self, msg: str) -> None:
            """uvicorn calls this on any RemoteProtocolError; ``checked.refusal`` says which."""
            self.refuse(self.checked.refusal or InvalidRequest(f"the request is not valid HTTP/1.1 ({msg})"))

        def start_header_timer(self) -> None:
            self.cancel_timer()
            self.timer = self.loop.call_later(header_timeout, self.header_timeout)

        def cancel_timer(self) -> None:
            if self.timer is not None:
                self.timer.cancel()
                self.timer = None

        def header_timeout(self) -> None:
            in_request = self.cycle is not None and not self.cycle.response_complete
            if in_request or self.transport.is_closing():
                return
            if self.head_started is None or self.conn.their_state is not h11.IDLE:
                self.transport.close()  # nothing sent since the last answer: no request to answer
                return
            self.refuse(RequestTimeout(f"the request line and headers did not arrive within {header_timeout:g} s"))

        def refuse(self, err: ServingError) -> None:
            """Answer ``err`` and close, unless the app is answering this request (then its
            answer, and its access-log line, are this one's: the app sees a client gone)."""
            cycle = self.cycle if self.cycle is not None and not self.cycle.response_complete else None
            if self.conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
                request_id = self.send_error(err)
                if cycle is None:
                    self.log(err, request_id)
            if cycle is not None:
                cycle.disconnected = True
                cycle.message_event.set()
            self.linger()

        def send_error(self, err: ServingError) -> str:
            """Send ``err`` as JSON with Connection: close; returns the request id it carries."""
            request = self.checked.request
            request_id = request_id_or_new(header(request, b"x-request-id"))
            reply = error_reply(err)
            headers = [
                (b"content-type", JSON_TYPE.encode()),
                (b"content-length", str(len(reply.body)).encode()),
                (b"connection", b"close"),
                (b"x-request-id", request_id.encode()),
            ]
            if isinstance(err, Unavailable):
                headers.append((b"retry-after", str(err.retry_after_seconds).encode()))
            head_only = request is not None and request.method == b"HEAD"  # h11 refuses a body then
            for event in (
                h11.Response(status_code=reply.status, headers=headers, reason=HTTPStatus(reply.status).phrase),
                h11.Data(data=b"" if head_only else reply.body),
                h11.EndOfMessage(),
            ):
                self.transport.write(self.conn.send(event))
            return request_id

        def log(self, err: ServingError, request_id: str) -> None:
            request = self.checked.request
            started = self.head_started if self.head_started is not None else time.perf_counter()
            record(
                AccessLine(
                    "http",
                    self.client[0] if self.client else "",
                    request.method.decode("ascii") if request is not None else "",
                    target_path(request.target) if request is not None else "",
                    err.http_status,
                    "",
                    0,
                    time.perf_counter() - started,
                    request_id,
                    trace_id(header(request, b"traceparent")),
                )
            )

        def linger(self) -> None:
            """Send the end of the stream, drop what still arrives, close when the client does
            or after LINGER_SECONDS."""
            self.lingering = True
            self.cancel_timer()
            if self.transport.is_closing():
                return
            if self.transport.can_write_eof():
                self.transport.write_eof()
            self.flow.resume_reading()
            self.timer = self.loop.call_later(LINGER_SECONDS, self.transport.close)

    return Connection
