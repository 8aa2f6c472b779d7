"""Wire-level values of the SARK Gateway API v1: responses and the error envelope.

Every non-2xx answer carries ``{"error": {"code", "message", "request_id"}}`` with
``Content-Type: application/json``; the code follows from the status by :data:`ERROR_CODES`
(the codes docs/gateway/ERROR_HANDLING.md lists for ``GatewayError.code``). Statuses outside
the table get a generic code so a fault can inject any status and still send a well-formed
envelope.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

__all__ = ["ERROR_CODES", "JSON", "Response", "error_code", "error_response", "json_bytes"]

JSON = "application/json"

#: Status -> error code of the SARK Gateway API v1; the client maps them back in
#: ``sark_sync._exceptions.STATUS_ERRORS``.
ERROR_CODES = {
    400: "invalid_request",
    401: "unauthenticated",
    403: "policy_denied",
    404: "not_found",
    405: "method_not_allowed",
    409: "idempotency_conflict",
    413: "payload_too_large",
    429: "rate_limited",
    502: "upstream_error",
    503: "unavailable",
    504: "upstream_timeout",
}


def error_code(status: int) -> str:
    """Return the error code for ``status`` (generic ones outside the table)."""
    if status in ERROR_CODES:
        return ERROR_CODES[status]
    return "internal_error" if status >= 500 else "invalid_request"


def json_bytes(value: object) -> bytes:
    """Serialise ``value`` as compact UTF-8 JSON."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def format_retry_after(value: float | str) -> str:
    """Render a Retry-After value: whole seconds as an integer, strings (HTTP dates) as is."""
    if isinstance(value, str):
        return value
    return str(int(value)) if float(value).is_integer() else str(value)


@dataclass
class Response:
    """One HTTP answer before it is written: status, extra headers, body and content type."""

    status: int
    body: bytes = b""
    content_type: str | None = JSON
    headers: list[tuple[str, str]] = field(default_factory=list)
    close: bool = False

    @classmethod
    def json(cls, status: int, value: object) -> Response:
        return cls(status, json_bytes(value))


def error_response(
    status: int,
    message: str,
    request_id: str,
    *,
    retry_after: float | str | None = None,
    **extra: Any,
) -> Response:
    """Build the error envelope for ``status``; ``extra`` adds fields such as ``reason``."""
    error = {"code": error_code(status), "message": message, "request_id": request_id}
    error.update(extra)
    response = Response.json(status, {"error": error})
    if retry_after is not None:
        response.headers.append(("Retry-After", format_retry_after(retry_after)))
    return response
