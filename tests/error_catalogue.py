"""Every public sark_sync exception, built with every argument it takes (each set to a value
that is not its default), and how to compare a copy with the original: shared by the tests of
errors that travel (pickle, Celery's JSON encoding, a real Redis result backend) and by the
Celery test app, whose task raises them in a real worker."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import sark_sync
from sark_sync import GatewayError, ToolResult

__all__ = ["CONTEXT", "EXTRA", "OPENED", "PUBLIC", "assert_same", "build", "comparable"]

#: The context every GatewayError takes, each set to a value that is not its default.
CONTEXT: dict[str, Any] = {
    "method": "POST", "url": "http://gw.test/api/v1/invoke", "status_code": 503,
    "code": "unavailable", "request_id": "req-1", "server": "inventory", "tool": "reserve",
    "attempts": 3, "retry_after": 2.5,
}
OPENED = datetime(2026, 1, 2, 3, 4, 5, 678_000, tzinfo=timezone.utc)

#: What each exception takes beyond CONTEXT, again every argument set.
EXTRA: dict[type[GatewayError], dict[str, Any]] = {
    sark_sync.ProcessStartError: {"command": "/usr/bin/mcp-server --stdio"},
    sark_sync.ProcessExitedError: {"returncode": -9, "stderr_tail": "Traceback ...\nboom"},
    sark_sync.RPCError: {"code": -32602, "rpc_message": "invalid params",
                         "data": {"field": "sku", "allowed": [1, 2.5, None, True],
                                  "nested": {"deep": ["x"]}}},
    sark_sync.CapabilityNotSupported: {"capability": "prompts", "method": "prompts/get"},
    sark_sync.CallCancelled: {"reason": "user pressed stop"},
    sark_sync.DeadlineExceeded: {
        "timeout": 5.0, "slept": 1.25,
        "last_error": sark_sync.RateLimitError("rate_limited: slow", status_code=429,
                                               code="rate_limited", retry_after=7.0,
                                               attempts=2, request_id="req-1"),
    },
    sark_sync.CircuitOpenError: {"breaker": "http://gw.test/inventory", "opened_at": OPENED,
                                 "probe_at": OPENED + timedelta(seconds=30), "failures": 5},
    sark_sync.AuthorizationDenied: {"reason": "team mismatch", "audit_id": "aud-7"},
    sark_sync.ToolExecutionError: {"result": ToolResult(
        content=({"type": "text", "text": "only 12 left"}, {"type": "image", "data": "AA=="}),
        structured={"left": 12, "skus": ["A-1"]}, is_error=True, request_id="req-1",
        server="inventory", tool="reserve", latency_ms=12.5, attempts=2,
        filtered=("password", "items[0].token"))},
}

PUBLIC: list[type[GatewayError]] = sorted(
    (value for value in (getattr(sark_sync, name) for name in sark_sync.__all__)
     if isinstance(value, type) and issubclass(value, GatewayError)),
    key=lambda cls: cls.__name__)


def build(cls: type[GatewayError]) -> GatewayError:
    return cls(f"{cls.__name__}: it failed", **{**CONTEXT, **EXTRA.get(cls, {})})


def comparable(value: Any) -> Any:
    """Exceptions compare by identity: compare them by type and attributes instead."""
    if isinstance(value, BaseException):
        return (type(value), comparable(vars(value)))
    if isinstance(value, dict):
        return {key: comparable(item) for key, item in value.items()}
    return value


def assert_same(copy: BaseException, error: GatewayError) -> None:
    assert type(copy) is type(error)
    assert isinstance(copy, GatewayError)
    assert comparable(vars(copy)) == comparable(vars(error))
    assert (copy.message, str(copy), repr(copy)) == (error.message, str(error), repr(error))
    assert (copy.retryable, copy.retry_after) == (error.retryable, error.retry_after)
    assert copy.args == error.args
