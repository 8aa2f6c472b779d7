"""What a web view should answer when a tool call it made raised a :class:`GatewayError`.

Framework-free, so that the Django middleware and the Flask error handler answer the same
status for the same error; each framework only turns an :class:`ErrorResponse` into its own
response object. The mapping speaks to the end user of the web application, not to its
developer: the application's own mistakes (a bad setting or argument, a closed client, a
forbidden transport) are not mapped (``None``) and stay server errors (500) with their
traceback in the application's log, while everything the gateway or a tool did is::

    AuthorizationDenied                               403 policy_denied
    RateLimitError                                    429 rate_limited       Retry-After
    ServiceUnavailableError, CircuitOpenError,
    AuthorizationUnavailable                          503 unavailable        Retry-After
    DeadlineExceeded, TransportTimeout,
    UpstreamTimeoutError                              504 upstream_timeout
    any other GatewayError                            502 upstream_error

A :class:`DeadlineExceeded` whose last attempt was refused with 429 or 503 answers as that
refusal did (the caller's deadline ran out waiting for the gateway to accept calls again, so
"try later" is the truth). ``Retry-After`` is whole seconds, rounded up, when the error knows
when to come back: ``retry_after`` of the error (or of that last attempt), or the time until an
open breaker admits its next probe.

The body is JSON with a fixed message per status and the gateway's ``request_id`` when known:
never ``str(error)``, which names internal servers and tools.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from .._exceptions import (
    AuthorizationDenied,
    AuthorizationUnavailable,
    CircuitOpenError,
    ClientClosedError,
    ConfigurationError,
    DeadlineExceeded,
    GatewayError,
    RateLimitError,
    ServiceUnavailableError,
    TransportNotAvailableError,
    TransportTimeout,
    UpstreamTimeoutError,
)

__all__ = ["ErrorResponse", "error_response"]

#: Errors that are the application's own mistakes: answered by the framework as any bug (500).
NOT_MAPPED: tuple[type[GatewayError], ...] = (
    ConfigurationError, ClientClosedError, TransportNotAvailableError)

#: status -> (the body's ``code``, the body's ``message``)
STATUS_TEXT: dict[int, tuple[str, str]] = {
    403: ("policy_denied", "The request was denied by policy."),
    429: ("rate_limited", "Too many requests; try again later."),
    502: ("upstream_error", "A service this request depends on failed."),
    503: ("unavailable", "A service this request depends on is unavailable; try again later."),
    504: ("upstream_timeout", "A service this request depends on did not answer in time."),
}


@dataclass(frozen=True)
class ErrorResponse:
    """The HTTP answer for one error: ``status``, a JSON ``body`` and ``headers``."""

    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


def error_response(error: BaseException) -> ErrorResponse | None:
    """The answer for ``error``, or None when it is not a :class:`GatewayError` to map (any
    other exception, or one of :data:`NOT_MAPPED`): let the framework handle it then."""
    if not isinstance(error, GatewayError) or isinstance(error, NOT_MAPPED):
        return None
    status, retry_after = _classify(error)
    code, message = STATUS_TEXT[status]
    body: dict[str, Any] = {"code": code, "message": message}
    if error.request_id is not None:
        body["request_id"] = error.request_id
    headers = {}
    if retry_after is not None and status in (429, 503):
        headers["Retry-After"] = str(max(0, math.ceil(retry_after)))
    return ErrorResponse(status, {"error": body}, headers)


def _classify(error: GatewayError) -> tuple[int, float | None]:
    """(status, seconds until the caller may try again, if known)."""
    if isinstance(error, DeadlineExceeded):
        last = error.last_error
        if isinstance(last, (RateLimitError, ServiceUnavailableError)):
            status, retry_after = _classify(last)
            return status, error.retry_after if error.retry_after is not None else retry_after
        return 504, None
    if isinstance(error, AuthorizationDenied):
        return 403, None
    if isinstance(error, RateLimitError):
        return 429, error.retry_after
    if isinstance(error, CircuitOpenError):
        return 503, _until(error.probe_at) if error.retry_after is None else error.retry_after
    if isinstance(error, (ServiceUnavailableError, AuthorizationUnavailable)):
        return 503, error.retry_after
    if isinstance(error, (TransportTimeout, UpstreamTimeoutError)):
        return 504, None
    return 502, None


def _until(moment: object) -> float | None:
    """Seconds from now until ``moment`` (an aware datetime), or None if it is not one."""
    if not isinstance(moment, datetime) or moment.tzinfo is None:
        return None
    return max(0.0, (moment - datetime.now(timezone.utc)).total_seconds())
