"""The status -> exception table, the text of errors, pickling with context, and what
``retryable`` and ``retry_after`` say."""

from __future__ import annotations

import pickle
from datetime import datetime, timezone
from typing import Any, Callable

import pytest

from sark_sync import (
    APIError,
    AuthenticationError,
    AuthorizationDenied,
    AuthorizationUnavailable,
    BadRequestError,
    BreakerPolicy,
    CallCancelled,
    CircuitOpenError,
    ConnectionFailed,
    DeadlineExceeded,
    GatewayError,
    IdempotencyConflictError,
    NotFoundError,
    PayloadTooLargeError,
    ProcessExitedError,
    ProtocolError,
    RateLimitError,
    RetryPolicy,
    ServerError,
    ServiceUnavailableError,
    ToolExecutionError,
    ToolResult,
    TransportTimeout,
    UpstreamError,
    UpstreamTimeoutError,
    ValidationError,
)
from sark_sync._exceptions import CapabilityNotSupported, error_for_status
from sark_sync.resilience import Breaker, Retrying, mark_sent, mark_unsent
from sark_sync.resilience._retrying import retryable


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (400, BadRequestError),
        (401, AuthenticationError),
        (403, AuthorizationDenied),
        (404, NotFoundError),
        (409, IdempotencyConflictError),
        (413, PayloadTooLargeError),
        (422, BadRequestError),
        (429, RateLimitError),
        (500, ServerError),
        (502, UpstreamError),
        (503, ServiceUnavailableError),
        (504, UpstreamTimeoutError),
        (418, APIError),
        (599, ServerError),
    ],
)
def test_error_for_status_maps_status_to_class(status: int, cls: type) -> None:
    error = error_for_status(status, "boom", code="c", request_id="r-1", server="s", tool="t")
    assert type(error) is cls
    assert (error.message, error.status_code, error.code, error.request_id, error.server,
            error.tool) == ("boom", status, "c", "r-1", "s", "t")


def test_error_for_status_403_carries_reason_and_audit_id() -> None:
    error = error_for_status(403, "policy_denied: no", code="policy_denied",
                             reason="team mismatch", audit_id="aud-7")
    assert type(error) is AuthorizationDenied
    assert (error.reason, error.audit_id, error.status_code, error.code) == (
        "team mismatch", "aud-7", 403, "policy_denied")


def test_error_for_status_carries_retry_after() -> None:
    assert error_for_status(429, "slow down", retry_after=7.0).retry_after == 7.0


def test_str_is_the_message_alone_without_context() -> None:
    assert str(GatewayError("boom")) == "boom"


def test_str_appends_every_set_context_field_in_a_stable_order() -> None:
    error = ServiceUnavailableError(
        "unavailable: down", retry_after=2.0, attempts=3, tool="t", server="s", request_id="r",
        code="unavailable", status_code=503, url="http://gw.test/api/v1/invoke", method="POST",
    )
    assert str(error) == (
        "unavailable: down (method=POST, url=http://gw.test/api/v1/invoke, status_code=503, "
        "code=unavailable, request_id=r, server=s, tool=t, attempts=3, retry_after=2.0)"
    )


def test_str_of_authorization_denied_shows_no_more_than_the_context() -> None:
    error = AuthorizationDenied("denied", reason="secret reason", audit_id="aud-1", status_code=403)
    assert str(error) == "denied (status_code=403)"


def test_str_of_deadline_exceeded_names_the_last_error_type_not_its_message() -> None:
    error = DeadlineExceeded("deadline of 2s exceeded", timeout=2.0, slept=0.12345, attempts=2,
                             last_error=ConnectionFailed("token=abc in a message"))
    assert str(error) == (
        "deadline of 2s exceeded (attempts=2, timeout=2.0, slept=0.123, "
        "last_error=ConnectionFailed)"
    )


def test_repr_is_the_class_and_the_str() -> None:
    assert repr(NotFoundError("nope", status_code=404)) == "NotFoundError('nope (status_code=404)')"


def test_with_fills_only_unset_context() -> None:
    error = APIError("x", server="from-transport")
    error._with(server="from-pipeline", tool="t", request_id=None)
    assert (error.server, error.tool, error.request_id) == ("from-transport", "t", None)


def _roundtrip(error: BaseException) -> Any:
    return pickle.loads(pickle.dumps(error))


def _comparable(state: dict[str, Any]) -> dict[str, Any]:
    # Exceptions compare by identity; compare nested ones by type and message.
    return {key: ((type(v), str(v)) if isinstance(v, BaseException) else v)
            for key, v in state.items()}


PICKLED = [
    GatewayError("boom", method="GET", url="http://gw.test/health", status_code=500, code="x",
                 request_id="r", server="s", tool="t", attempts=2, retry_after=1.5),
    DeadlineExceeded("deadline of 5s exceeded", timeout=5.0, slept=1.25, attempts=3,
                     last_error=ConnectionFailed("refused", attempts=3), server="s"),
    CircuitOpenError("circuit 'b' is open", breaker="http://gw.test/s",
                     opened_at=datetime(2024, 1, 2, 3, 4, 5, tzinfo=timezone.utc),
                     probe_at=datetime(2024, 1, 2, 3, 4, 35, tzinfo=timezone.utc), failures=5,
                     server="s"),
    RateLimitError("rate_limited: slow", status_code=429, code="rate_limited", retry_after=7.0,
                   request_id="r-9"),
    AuthorizationDenied("policy_denied: no", reason="team", audit_id="aud", status_code=403),
    ToolExecutionError("tool s/t reported an error: bad",
                       result=ToolResult(content=({"type": "text", "text": "bad"},),
                                         is_error=True, server="s", tool="t"),
                       server="s", tool="t"),
    CapabilityNotSupported("MCP server 's' does not declare the 'prompts' capability",
                           capability="prompts", method="prompts/get", server="s"),
]


@pytest.mark.parametrize("error", PICKLED, ids=lambda e: type(e).__name__)
def test_pickling_keeps_type_message_and_every_context_attribute(error: GatewayError) -> None:
    copy = _roundtrip(error)
    assert type(copy) is type(error)
    assert (copy.message, copy.args, str(copy)) == (error.message, error.args, str(error))
    assert _comparable(vars(copy)) == _comparable(vars(error))


def test_pickled_deadline_exceeded_keeps_the_last_errors_context() -> None:
    copy = _roundtrip(PICKLED[1])
    assert type(copy.last_error) is ConnectionFailed
    assert copy.last_error.attempts == 3


def test_capability_not_supported_names_the_capability_method_and_server() -> None:
    error = CapabilityNotSupported("no prompts", capability="prompts", method="prompts/get",
                                   server="s")
    assert (error.capability, error.method, error.server) == ("prompts", "prompts/get", "s")
    assert str(error) == "no prompts (method=prompts/get, server=s)"
    assert isinstance(error, GatewayError)


def test_capability_not_supported_is_never_retried() -> None:
    error = CapabilityNotSupported("no", capability="resources", method="resources/read")
    assert retryable(error, idempotent=True, policy=RetryPolicy()) is False


# -- retryable and retry_after ------------------------------------------------------------------


def raising(error: GatewayError) -> Callable[[], str]:
    def attempt() -> str:
        raise error

    return attempt


@pytest.mark.parametrize(("status", "expected"), [
    (408, True), (429, True), (502, True), (503, True), (504, True),
    (400, False), (401, False), (403, False), (404, False), (409, False), (413, False),
    (422, False), (500, False), (501, False), (599, False),
])
def test_retryable_says_which_statuses_the_retry_loop_tries_again(status: int,
                                                                  expected: bool) -> None:
    assert error_for_status(status, "answered").retryable is expected


@pytest.mark.parametrize(("error", "expected"), [
    (ConnectionFailed("refused"), True),
    (TransportTimeout("read timed out"), True),
    (ProcessExitedError("exited", returncode=1), True),
    (ProtocolError("not JSON"), False),
    (mark_sent(ProtocolError("cut short")), True),
    (mark_sent(ConnectionFailed("TLS failed"), retryable=False), False),
    (mark_unsent(ProtocolError("never sent")), True),
    (mark_unsent(DeadlineExceeded("before sending", timeout=1.0)), False),
    (CallCancelled("cancelled", reason="stop"), False),
    (CircuitOpenError("open", breaker="b"), False),
    (ToolExecutionError("tool said no"), False),
    (AuthorizationDenied("denied", status_code=403), False),
    (AuthorizationUnavailable("engine down", status_code=503), False),
    (ValidationError("bad name"), False),
    (GatewayError("anything else"), False),
], ids=lambda value: type(value).__name__ if isinstance(value, BaseException) else None)
def test_retryable_of_errors_without_a_gateway_status(error: GatewayError,
                                                      expected: bool) -> None:
    assert error.retryable is expected
    assert retryable(error, idempotent=True, policy=RetryPolicy()) is expected


def test_retryable_follows_the_statuses_of_the_loop_the_error_came_through() -> None:
    policy = RetryPolicy(attempts=1, statuses=frozenset({500, 429}))
    loop = Retrying(policy, retryable=lambda error: retryable(error, idempotent=True,
                                                              policy=policy))
    with pytest.raises(ServerError) as caught:
        loop.call(raising(error_for_status(500, "answered 500")))
    assert caught.value.retryable is True  # what this loop's policy says, not the default
    with pytest.raises(ServiceUnavailableError) as unlisted:
        loop.call(raising(error_for_status(503, "answered 503")))
    assert unlisted.value.retryable is False


def test_retryable_is_read_only_and_not_part_of_the_message() -> None:
    error = error_for_status(503, "unavailable", retry_after=2.0)
    assert str(error) == "unavailable (status_code=503, retry_after=2.0)"
    with pytest.raises(AttributeError):
        error.retryable = False  # type: ignore[misc]


def test_an_open_breaker_says_when_it_admits_a_call_again() -> None:
    now = [100.0]
    breaker = Breaker("b", BreakerPolicy(failure_threshold=1, recovery_timeout=30.0),
                      clock=lambda: now[0])
    with pytest.raises(UpstreamError):
        breaker.call(raising(error_for_status(502, "down")))
    with pytest.raises(CircuitOpenError) as first:
        breaker.call(lambda: "never runs")
    now[0] += 12.5
    with pytest.raises(CircuitOpenError) as later:
        breaker.call(lambda: "never runs")
    assert (first.value.retry_after, later.value.retry_after) == (30.0, 17.5)
    assert first.value.retryable is False  # failing fast is not a failure of the request
