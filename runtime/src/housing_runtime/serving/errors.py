"""What a client can do wrong, as named errors: each class is mapped here, once, to the HTTP
status and the gRPC status code its front end answers with. The message is one line naming what
was wrong and what to do, the same words over HTTP, gRPC and (through ``validate``) the CLI.

The gRPC codes are kept as names (``grpc.StatusCode`` members), so that the HTTP side never
imports grpc.
"""

from __future__ import annotations


class ServingError(Exception):
    """A request the server refuses; never a fault of the server's own."""

    http_status = 400
    grpc_code = "INVALID_ARGUMENT"


class InvalidRequest(ServingError):
    """A bad value, shape, datatype, input name or document: NaN, float32 overflow, bad JSON."""


class UnsupportedEncoding(ServingError):
    """A Content-Encoding the server does not decode."""

    http_status = 415


class NotFound(ServingError):
    """No such model, version or route."""

    http_status = 404
    grpc_code = "NOT_FOUND"


class MethodNotAllowed(ServingError):
    """A route asked with the wrong HTTP method (HTTP only)."""

    http_status = 405
    grpc_code = "UNIMPLEMENTED"


class RequestTimeout(ServingError):
    """The request did not arrive in time."""

    http_status = 408
    grpc_code = "DEADLINE_EXCEEDED"


class TooLarge(ServingError):
    """A body over --max-body-bytes, or rows over --max-rows."""

    http_status = 413
    grpc_code = "RESOURCE_EXHAUSTED"


class HeadersTooLarge(ServingError):
    """Request headers over the server's limits (HTTP only)."""

    http_status = 431
    grpc_code = "RESOURCE_EXHAUSTED"


class VersionNotSupported(ServingError):
    """An HTTP version other than 1.0 or 1.1 in the request line (HTTP only)."""

    http_status = 505
    grpc_code = "UNIMPLEMENTED"


class Unimplemented(ServingError):
    """An RPC of the V2 proto the server does not serve: loading and unloading models (gRPC)."""

    http_status = 501
    grpc_code = "UNIMPLEMENTED"


class Unavailable(ServingError):
    """Not ready yet (models loading), shutting down, or at --max-concurrency: retry later."""

    http_status = 503
    grpc_code = "UNAVAILABLE"
    retry_after_seconds = 1
