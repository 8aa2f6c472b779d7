"""Tool calls prepared for sending, and the outcome of calls run on the thread pool.

A call is validated and encoded once, before anything is sent (so ``invoke_many`` can refuse a
bad batch before any call runs), then sent, and re-sent on retry, as the same bytes with the
same ``Idempotency-Key``.
"""

from __future__ import annotations

from collections.abc import Mapping
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

from ._deadline import Deadline
from ._models import ToolResult
from ._validation import encode_invocation, validate_header_value, validate_name

__all__ = ["Invocation", "invoke_request", "outcome"]

#: Seconds a waiter on a submitted call allows beyond its deadline for the worker to report.
RESULT_GRACE = 1.0


class Invocation:
    """A validated tool call, ready to send (and to re-send on retry): for the gateway an
    encoded body and headers; for a local server (``local=True``) the checked arguments."""

    __slots__ = ("arguments", "body", "headers", "idempotent", "local", "server", "tool")

    def __init__(self, server: str, tool: str, body: bytes, headers: dict[str, str],
                 idempotent: bool, *, local: bool = False,
                 arguments: Mapping[str, Any] | None = None) -> None:
        self.server = server
        self.tool = tool
        self.body = body
        self.headers = headers
        self.idempotent = idempotent
        self.local = local
        self.arguments = arguments or {}


def outcome(future: Future[ToolResult], deadline: Deadline) -> ToolResult | BaseException:
    """The result or the exception of a submitted call, waiting at most until its deadline
    (plus a grace for the worker to report)."""
    try:
        return future.result(timeout=deadline.remaining() + RESULT_GRACE)
    except FutureTimeout:
        future.cancel()
        return deadline.exceeded("waiting for a submitted call", attempts=0)
    except Exception as exc:
        return exc


def invoke_request(
    server: str, tool: str, parameters: Mapping[str, Any] | None, user_token: str | None,
    idempotency_key: str | None,
) -> tuple[bytes, dict[str, str]]:
    """Validate an invocation's arguments and build its body and headers."""
    validate_name(server, "server")
    validate_name(tool, "tool")
    body = encode_invocation(server, tool, parameters)
    headers: dict[str, str] = {}
    if user_token is not None:
        validate_header_value(user_token, "user_token")
        headers["Authorization"] = f"Bearer {user_token}"
    if idempotency_key is not None:
        validate_header_value(idempotency_key, "idempotency_key")
        headers["Idempotency-Key"] = idempotency_key
    return body, headers
