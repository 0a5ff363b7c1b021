"""The HTTP server against what an adversarial client sends: the concurrency limit, request
smuggling, header limits, odd HTTP versions, multi-member gzip, request ids, and stderr that is
JSON on every line. Each test runs a real `serve` process on 127.0.0.1 and sends a bounded
number of requests; the first tests check that the private uvicorn and h11 names that
``serving.h11_connection`` relies on still exist, so an upgrade that changes them fails here.
"""

from __future__ import annotations

import asyncio
import gzip
import http.client
import inspect
import json
import re
import signal
import socket
import subprocess
import threading
import time
import zlib
from pathlib import Path

import h11
import pytest
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol, RequestResponseCycle

from housing_runtime.serving import h11_connection, server
from housing_runtime.serving.errors import InvalidRequest, TooLarge
from server_checks import ROW, free_port, infer_body, request, serve_command, wait_ready

REPO = Path(__file__).resolve().parents[2]
BODY = infer_body(ROW)
INFER = b"POST /v2/models/uint8/infer HTTP/1.1\r\nHost: x\r\n"
HEX32 = re.compile(r"[0-9a-f]{32}")


class Served:
    """`serve` on a free port, its stderr in a file (a pipe could fill and stall it)."""

    def __init__(self, art: Path, folder: Path, *args: str):
        self.port = free_port()
        self.log = folder / f"stderr-{self.port}.txt"
        with self.log.open("wb") as err:
            self.process = subprocess.Popen(
                serve_command(art, self.port, *args), cwd=REPO, stdout=subprocess.DEVNULL, stderr=err
            )
        wait_ready(self.port, self.process, "the server", 60)

    def stop(self) -> list[dict]:
        """SIGTERM, the exit code checked; the stderr lines, each parsed as JSON."""
        self.process.send_signal(signal.SIGTERM)
        assert self.process.wait(timeout=20) == 0
        return [json.loads(line) for line in self.log.read_text().splitlines()]


@pytest.fixture(scope="module")
def art(tmp_path_factory):
    from helpers import write_synthetic_artifacts

    return write_synthetic_artifacts(tmp_path_factory.mktemp("hardening") / "artifacts")


@pytest.fixture(scope="module")
def port(art, tmp_path_factory):
    served = Served(art, tmp_path_factory.mktemp("log"), "--header-timeout", "2", "--read-timeout", "2")
    yield served.port
    served.stop()


def exchange(port: int, *pieces: bytes, pause: float = 0.0, timeout: float = 10) -> bytes:
    """Send ``pieces`` (``pause`` seconds apart) on one connection; everything the server sends
    until it closes the connection (or ``timeout``)."""
    with socket.create_connection(("127.0.0.1", port)) as conn:
        for piece in pieces:
            conn.sendall(piece)
            time.sleep(pause)
        conn.settimeout(timeout)
        reply = b""
        try:
            while chunk := conn.recv(65536):
                reply += chunk
        except TimeoutError:
            reply += b"<still open>"
    return reply


def parse(reply: bytes) -> tuple[int, dict[str, str], dict]:
    """The first response's status, headers (lowercase names) and JSON body."""
    head, _, rest = reply.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines[1:])
    body = rest[: int(headers.get("content-length", len(rest)))]
    return int(lines[0].split()[1]), headers, json.loads(body) if body else {}


def closed_after_one_answer(reply: bytes) -> bool:
    return len(re.findall(rb"HTTP/1\.1 \d{3} ", reply)) == 1 and not reply.endswith(b"<still open>")


# ---- the private uvicorn and h11 names h11_connection relies on -------------------------------


def test_uvicorn_still_has_the_private_hooks_the_connection_subclass_uses():
    for name, params in {
        "connection_made": ["self", "transport"],
        "data_received": ["self", "data"],
        "connection_lost": ["self", "exc"],
        "on_response_complete": ["self"],
        "send_400_response": ["self", "msg"],
        "shutdown": ["self"],
    }.items():
        assert list(inspect.signature(getattr(H11Protocol, name)).parameters) == params, name
    # A RemoteProtocolError while parsing is answered through send_400_response: the refusals hook.
    events = inspect.getsource(H11Protocol.handle_events)
    assert "except h11.RemoteProtocolError" in events and "self.send_400_response(" in events
    config = uvicorn.Config(asgi_app, h11_max_incomplete_event_size=h11_connection.HEADER_BYTES)
    config.load()
    protocol = H11Protocol(config, uvicorn.server.ServerState(), {}, _loop=object())
    for attribute in ("conn", "cycle", "transport", "loop", "client", "flow", "connections"):
        assert hasattr(protocol, attribute), attribute
    assert isinstance(protocol.conn, h11.Connection)
    cycle = RequestResponseCycle(
        scope={},
        conn=protocol.conn,
        transport=None,
        flow=None,
        logger=None,
        access_logger=None,
        access_log=False,
        default_headers=[],
        message_event=asyncio.Event(),
        on_response=lambda: None,
    )
    assert cycle.response_complete is False and cycle.disconnected is False
    assert isinstance(cycle.message_event, asyncio.Event)


async def asgi_app(scope, receive, send) -> None:
    """An app for uvicorn's Config, never called."""


def test_h11_still_keeps_its_receive_buffer_where_the_head_size_is_measured():
    conn = h11_connection.CheckedConnection()
    conn.receive_data(b"GET / HTTP/1.1\r\nHost: x\r\n\r\nleft")
    assert len(conn._receive_buffer) == len(conn.trailing_data[0])
    assert isinstance(conn.next_event(), h11.Request) and conn.trailing_data[0] == b"left"


@pytest.mark.parametrize(
    "head,words",
    [
        (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", "both"),
        (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n", "both"),
        (b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", "HTTP/1.0 has no Transfer-Encoding"),
        (b"GET / HTTP/9.9\r\nHost: x\r\n\r\n", "HTTP/9.9 is not served"),
        (b"GET / HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(100)) + b"\r\n", "101 header"),
        (b"GET / HTTP/1.1\r\nHost: x\r\nX: " + b"a" * (16 << 10) + b"\r\n\r\n", "over the limit of 16384"),
    ],
)
def test_the_checked_connection_refuses_what_h11_alone_accepts(head, words):
    plain = h11.Connection(h11.SERVER)
    plain.receive_data(head)
    assert isinstance(plain.next_event(), h11.Request)  # what uvicorn would have served
    conn = h11_connection.CheckedConnection()
    conn.receive_data(head)
    with pytest.raises(h11.RemoteProtocolError):
        conn.next_event()
    assert words in str(conn.refusal)


# ---- gzip of several members (RFC 1952), still bounded ----------------------------------------


def test_a_gzip_body_of_several_members_decodes_to_their_concatenation():
    assert server.decode(gzip.compress(b"ab") + gzip.compress(b"cd"), "gzip", 100) == b"abcd"
    assert server.decode(zlib.compress(b"abcd"), "deflate", 100) == b"abcd"


@pytest.mark.parametrize(
    "body,error,words",
    [
        (gzip.compress(b"a" * 60) * 2, TooLarge, "over the limit of 100"),  # a bomb across members
        (gzip.compress(b"ab") + gzip.compress(b"cd")[:-3], InvalidRequest, "truncated"),
        (gzip.compress(b"ab") + b"JUNK", InvalidRequest, "not one complete gzip stream"),
        (gzip.compress(b"") * (server.MAX_GZIP_MEMBERS + 1), InvalidRequest, "gzip members"),
        (zlib.compress(b"ab") * 2, InvalidRequest, "not one complete deflate stream"),
    ],
)
def test_gzip_members_are_still_bounded_and_complete(body, error, words):
    with pytest.raises(error, match=words):
        server.decode(body, "gzip" if body[:2] == b"\x1f\x8b" else "deflate", 100)


def test_a_gzip_bomb_split_over_members_is_refused_before_it_is_inflated():
    member = gzip.compress(b"\0" * (32 << 20))  # 32 KiB that inflate to 32 MiB
    started = time.monotonic()
    with pytest.raises(TooLarge):
        server.decode(member * 4, "gzip", 64 << 20)
    assert time.monotonic() - started < 5


def test_two_gzip_members_are_served(port):
    body = infer_body(ROW)
    halves = gzip.compress(body[:20]) + gzip.compress(body[20:])
    assert request(port, "POST", "/v2/models/uint8/infer", halves, {"Content-Encoding": "gzip"})[0] == 200


# ---- request smuggling and framing -------------------------------------------------------------


@pytest.mark.parametrize("order", ["cl-te", "te-cl"])
def test_content_length_with_transfer_encoding_is_refused_and_the_hidden_request_never_served(port, order):
    framing = [b"Content-Length: 4\r\n", b"Transfer-Encoding: chunked\r\n"]
    if order == "te-cl":
        framing.reverse()
    hidden = b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n"
    chunked = b"%x\r\n%s\r\n0\r\n\r\n" % (len(BODY), BODY)
    reply = exchange(port, INFER + b"".join(framing) + b"\r\n" + chunked + hidden)
    status, headers, body = parse(reply)
    assert (
        status == 400 and headers["connection"] == "close" and "Content-Length and Transfer-Encoding" in body["error"]
    )
    assert closed_after_one_answer(reply) and b'"live"' not in reply


def test_duplicate_content_lengths_must_agree(port):
    same = exchange(
        port,
        INFER
        + b"Content-Length: %d\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % (len(BODY), len(BODY))
        + BODY,
    )
    assert parse(same)[0] == 200  # RFC 9112 6.3: identical values are one
    status, headers, body = parse(exchange(port, INFER + b"Content-Length: 3\r\nContent-Length: 4\r\n\r\nabcd"))
    assert status == 400 and "conflicting Content-Length" in body["error"] and headers["connection"] == "close"


# ---- header limits, versions, timeouts ---------------------------------------------------------


def big_header_request(value_bytes: int) -> bytes:
    return b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Big: " + b"a" * value_bytes + b"\r\n\r\n"


@pytest.mark.parametrize("pieces", [1, 64], ids=["at-once", "in-pieces"])
def test_header_limits_are_the_same_however_the_bytes_arrive(port, pieces):
    def send(raw: bytes) -> bytes:
        size = -(-len(raw) // pieces)
        return exchange(port, *(raw[i : i + size] for i in range(0, len(raw), size)), pause=0.005)

    assert parse(send(big_header_request(15 << 10)))[0] == 200
    status, headers, body = parse(send(big_header_request(64 << 10)))
    assert status == 431 and headers["connection"] == "close" and "16384" in body["error"]


def test_too_many_header_fields_is_a_431(port):
    fields = b"".join(b"X-Field-%d: 1\r\n" % i for i in range(100))  # and Host: 101
    reply = exchange(port, b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n" + fields + b"\r\n")
    status, headers, body = parse(reply)
    assert status == 431 and "101 header fields" in body["error"] and closed_after_one_answer(reply)
    fields = b"".join(b"X-Field-%d: 1\r\n" % i for i in range(98))  # with Host and Connection: 100
    assert (
        parse(exchange(port, b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" + fields + b"\r\n"))[0]
        == 200
    )


def test_only_http_1_is_served(port):
    reply = exchange(port, b"GET /v2/health/live HTTP/9.9\r\nHost: x\r\n\r\n")
    status, headers, body = parse(reply)
    assert status == 505 and "HTTP/9.9" in body["error"] and closed_after_one_answer(reply)
    for version in (b"1.0", b"1.1"):
        line = b"GET /v2/health/live HTTP/%s\r\nHost: x\r\nConnection: close\r\n\r\n" % version
        assert parse(exchange(port, line))[0] == 200


def test_a_late_body_is_a_408_that_closes_the_connection(port):
    reply = exchange(port, INFER + b"Content-Length: %d\r\n\r\n" % len(BODY) + BODY[:10])
    status, headers, body = parse(reply)
    assert status == 408 and headers["connection"] == "close" and closed_after_one_answer(reply)


def test_a_request_head_that_does_not_arrive_in_time_is_a_408(port):
    reply = exchange(port, b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n")
    status, headers, body = parse(reply)
    assert status == 408 and "line and headers" in body["error"] and closed_after_one_answer(reply)


@pytest.mark.parametrize(
    "path,body",
    [("/v2/models/uint8/infer", infer_body([], [0, 8])), ("/v1/models/uint8:predict", b'{"instances": []}')],
)
def test_an_empty_batch_is_a_400(port, path, body):
    status, _, raw, _ = request(port, "POST", path, body)
    assert status == 400 and json.loads(raw)["error"]


def test_a_wrong_method_on_metrics_is_a_405_naming_get(port):
    status, ctype, raw, response = request(port, "POST", "/metrics", b"")
    assert status == 405 and ctype == "application/json" and "use GET" in json.loads(raw)["error"]
    assert response.getheader("Allow") == "GET, HEAD"


# ---- request ids -------------------------------------------------------------------------------


def test_a_request_id_is_echoed_or_made_on_every_answer(port):
    assert (
        request(port, "GET", "/v2/health/live", None, {"X-Request-ID": "abc-123"})[3].getheader("X-Request-ID")
        == "abc-123"
    )
    made = request(port, "GET", "/v2/models/nope")[3].getheader("X-Request-ID")  # an error too
    assert HEX32.fullmatch(made)
    for bad in ("a" * 129, "two words", "caf\u00e9"):
        sent = request(port, "GET", "/v2/health/live", None, {"X-Request-ID": bad.encode("utf-8")})
        assert HEX32.fullmatch(sent[3].getheader("X-Request-ID"))
    refused = exchange(port, b"GET / HTTP/9.9\r\nX-Request-ID: r-9\r\n\r\n")
    assert parse(refused)[1]["x-request-id"] == "r-9"


# ---- concurrency -------------------------------------------------------------------------------


def slow_upload(port: int) -> socket.socket:
    """A request whose headers and first bytes are sent, the rest held back."""
    conn = socket.create_connection(("127.0.0.1", port))
    conn.sendall(INFER + b"Content-Length: %d\r\n\r\n" % len(BODY) + BODY[:10])
    return conn


def test_max_concurrency_admits_n_requests_refuses_the_next_and_recovers(art, tmp_path):
    served = Served(art, tmp_path, "--max-concurrency", "4", "--read-timeout", "10", "--header-timeout", "10")
    try:
        uploads = [slow_upload(served.port) for _ in range(4)]
        time.sleep(0.5)
        status, _, raw, response = request(served.port, "POST", "/v2/models/uint8/infer", BODY)
        assert status == 503 and "--max-concurrency" in json.loads(raw)["error"]
        assert response.getheader("Retry-After") == "1"
        assert request(served.port, "GET", "/v2/health/ready")[0] == 200  # probes are never refused
        for conn in uploads:  # the four were admitted: they are answered once their bodies arrive
            conn.sendall(BODY[10:])
            conn.settimeout(10)
            assert conn.recv(65536).startswith(b"HTTP/1.1 200")
            conn.close()
        assert request(served.port, "POST", "/v2/models/uint8/infer", BODY)[0] == 200
    finally:
        lines = served.stop()
    assert [line["status"] for line in lines if line.get("path") == "/v2/models/uint8/infer"].count(503) == 1


def test_idle_connections_do_not_count_against_requests(art, tmp_path):
    served = Served(art, tmp_path, "--max-concurrency", "4")
    try:
        idle = [socket.create_connection(("127.0.0.1", served.port)) for _ in range(8)]
        kept = []
        for _ in range(3):  # keep-alive connections that made a request and stay open
            conn = http.client.HTTPConnection("127.0.0.1", served.port, timeout=10)
            conn.request("GET", "/v2/health/live")
            conn.getresponse().read()
            kept.append(conn)
        statuses = [request(served.port, "POST", "/v2/models/uint8/infer", BODY)[0] for _ in range(4)]
        assert statuses == [200] * 4
        for conn in idle:
            conn.close()
        for conn in kept:
            conn.close()
    finally:
        served.stop()


def test_connections_past_the_cap_get_a_503_at_once(art, tmp_path):
    """--max-concurrency 1: at most 16 connections; the 17th is answered 503 at once."""
    served = Served(art, tmp_path, "--max-concurrency", "1")
    idle = [socket.create_connection(("127.0.0.1", served.port)) for _ in range(16)]
    try:
        time.sleep(0.3)
        status, headers, body = parse(exchange(served.port, b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n"))
        assert status == 503 and headers["retry-after"] == "1" and "connections" in body["error"]
    finally:
        for conn in idle:
            conn.close()
        served.stop()


def test_64_simultaneous_requests_on_the_default_server_all_succeed(art, tmp_path):
    served = Served(art, tmp_path, "--no-access-log")
    start = threading.Barrier(64)
    statuses: list[int] = []

    def one() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", served.port, timeout=30)
        conn.connect()
        start.wait(timeout=30)
        conn.request("POST", "/v2/models/uint8/infer", BODY)
        statuses.append(conn.getresponse().status)

    try:
        threads = [threading.Thread(target=one) for _ in range(64)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
    finally:
        served.stop()
    assert statuses == [200] * 64


# ---- the access log: one JSON line per request, nothing else on stderr ----------------------


def test_every_stderr_line_is_json_and_every_refused_request_has_one(art, tmp_path):
    served = Served(art, tmp_path, "--max-concurrency", "1", "--header-timeout", "3")
    trace = "4bf92f3577b34da6a3ce929d0e0e4736"
    try:
        request(
            served.port,
            "GET",
            "/v2/health/live",
            None,
            {"X-Request-ID": "live-1", "traceparent": f"00-{trace}-00f067aa0ba902b7-01"},
        )
        request(served.port, "GET", "/v2/health/live", None, {"X-Request-ID": "live-2", "traceparent": "00-zz-bad"})
        exchange(served.port, b"\x16\x03\x01 not http\r\n\r\n")
        exchange(served.port, b"GET /x HTTP/9.9\r\nX-Request-ID: version\r\n\r\n")
        exchange(
            served.port,
            INFER + b"X-Request-ID: smuggle\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        )
        exchange(served.port, big_header_request(32 << 10))
        upload = slow_upload(served.port)
        time.sleep(0.3)
        assert request(served.port, "POST", "/v2/models/uint8/infer", BODY, {"X-Request-ID": "busy"})[0] == 503
        upload.close()  # a client gone mid-body: the app's 400
        time.sleep(0.3)
    finally:
        lines = served.stop()
    by_id = {line.get("request_id"): line for line in lines}
    assert by_id["live-1"]["trace_id"] == trace and "trace_id" not in by_id["live-2"]
    assert by_id["version"]["status"] == 505 and by_id["smuggle"]["status"] == 400 and by_id["busy"]["status"] == 503
    statuses = sorted(line["status"] for line in lines if line.get("path") not in (None, "/v2/health/ready"))
    # the two probes, noise, HTTP/9.9, smuggling, headers, busy, and the abandoned upload
    assert statuses == [200, 200, 400, 400, 400, 431, 503, 505], lines


def test_keep_alive_answers_do_not_wait_on_nagle_and_delayed_acks(port):
    """Headers and body go out as two writes: without TCP_NODELAY on the accepted socket, each
    keep-alive answer after the first waited 40 ms for the client's delayed ACK (22 requests/s).
    Twenty answers on one connection take well under the 0.8 s that stall alone would cost."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    started = time.monotonic()
    for _ in range(20):
        conn.request("POST", "/v2/models/uint8/infer", BODY)
        response = conn.getresponse()
        response.read()
        assert response.status == 200
    assert time.monotonic() - started < 0.6
    conn.close()
