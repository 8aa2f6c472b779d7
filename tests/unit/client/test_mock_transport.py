"""``GatewayClient(transport=MockTransport(handler))``: the whole pipeline above the transport
(retries, breaker, authorization, audit, typed errors) runs without a socket."""

from __future__ import annotations

import gc
import threading
import weakref
from typing import Any

import pytest

from sark_sync import (
    AuditEvent,
    AuthorizationDenied,
    BreakerPolicy,
    CircuitOpenError,
    ClientClosedError,
    ConnectionFailed,
    Decision,
    GatewayClient,
    NotFoundError,
    ProtocolError,
    RateLimitError,
    RetryPolicy,
    ServiceUnavailableError,
    TransportNotAvailableError,
)
from sark_sync.governance import CallableSink
from sark_sync.testing import MockResponse, MockTransport
from sark_sync.transports import Request

FAST = RetryPolicy(attempts=3, backoff_base=0.0, jitter=False)


def ok(request: Request) -> MockResponse:
    body = request.json()
    return MockResponse(200, json={"result": {"content": [],
                                              "structuredContent": body["parameters"]}})


def scripted(*answers: MockResponse) -> MockTransport:
    """A transport answering ``answers`` in turn, then 200s."""
    queue = list(answers)

    def handler(request: Request) -> MockResponse:
        return queue.pop(0) if queue else ok(request)

    return MockTransport(handler)


def envelope(code: str, message: str = "m") -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


def test_a_call_reaches_the_handler_with_method_path_headers_and_json() -> None:
    transport = MockTransport(ok)
    with GatewayClient(transport=transport) as client:
        result = client.invoke_tool("demo", "echo", {"text": "hi"}, user_token="t0k",
                                    idempotency_key="k-1")
    assert result.structured == {"text": "hi"} and result.attempts == 1
    [request] = transport.requests
    assert (request.method, request.path, request.params) == ("POST", "/api/v1/invoke", {})
    assert request.json() == {"server": "demo", "tool": "echo",
                              "parameters": {"text": "hi"}}
    assert request.headers["Authorization"] == "Bearer t0k"
    assert request.headers["Idempotency-Key"] == "k-1"
    assert len(request.headers["X-Request-ID"]) == 36
    assert repr(request) == "<Request POST /api/v1/invoke>"  # no header value


def test_a_503_is_retried_with_the_same_request_and_key() -> None:
    transport = scripted(MockResponse(503, json=envelope("unavailable")))
    with GatewayClient(transport=transport, retry=FAST) as client:
        result = client.invoke_tool("demo", "echo", {"n": 1})
    assert result.attempts == 2 and len(transport.requests) == 2
    first, second = transport.requests
    assert first is second  # the same bytes, X-Request-ID and Idempotency-Key are re-sent


def test_a_503_is_not_retried_without_an_idempotency_key() -> None:
    transport = scripted(MockResponse(503, json=envelope("unavailable")))
    with GatewayClient(transport=transport, retry=FAST, idempotency_keys=False) as client:
        with pytest.raises(ServiceUnavailableError) as caught:
            client.invoke_tool("demo", "echo")
    assert caught.value.attempts == 1 and caught.value.server == "demo"
    assert caught.value.url == "mock://gateway/api/v1/invoke"


def test_retry_after_replaces_the_backoff() -> None:
    # A 30 s backoff would cross the 5 s deadline at once; the gateway's "0" is honoured.
    slow = RetryPolicy(attempts=3, backoff_base=30.0, jitter=False)
    transport = scripted(MockResponse(429, json=envelope("rate_limited"),
                                      headers={"Retry-After": "0"}))
    with GatewayClient(transport=transport, retry=slow, idempotency_keys=False,
                       timeout=5.0) as client:
        assert client.invoke_tool("demo", "echo").attempts == 2


def test_a_refused_retry_after_fails_fast_carrying_it() -> None:
    transport = scripted(MockResponse(429, json=envelope("rate_limited"),
                                      headers={"Retry-After": "600"}))
    with GatewayClient(transport=transport, retry=FAST) as client:
        with pytest.raises(RateLimitError) as caught:
            client.invoke_tool("demo", "echo")
    assert caught.value.retry_after == 600.0 and len(transport.requests) == 1


def test_the_breaker_opens_after_its_threshold_and_sends_nothing_more() -> None:
    transport = MockTransport(lambda request: MockResponse(503, json=envelope("unavailable")))
    client = GatewayClient(transport=transport, retry=RetryPolicy(attempts=1),
                           breaker=BreakerPolicy(failure_threshold=2, recovery_timeout=60))
    with client:
        for _ in range(2):
            with pytest.raises(ServiceUnavailableError):
                client.invoke_tool("demo", "echo")
        with pytest.raises(CircuitOpenError) as caught:
            client.invoke_tool("demo", "echo")
    assert len(transport.requests) == 2
    assert "mock://gateway/demo" in caught.value.message


def test_one_logical_call_is_one_breaker_outcome_whatever_its_retries() -> None:
    transport = MockTransport(lambda request: MockResponse(503, json=envelope("unavailable")))
    client = GatewayClient(transport=transport, retry=FAST,
                           breaker=BreakerPolicy(failure_threshold=2))
    with client:
        with pytest.raises(ServiceUnavailableError):
            client.invoke_tool("demo", "echo")
        assert len(transport.requests) == 3  # three attempts ...
        assert client.breaker_for("demo").failure_count == 1  # ... one failure counted


def test_a_policy_denial_sends_nothing_and_is_audited() -> None:
    events: list[AuditEvent] = []
    transport = MockTransport(lambda request: MockResponse(200, json={
        "server_name": "demo", "transport": "http", "sensitivity_level": "high"}
        if request.path == "/api/v1/servers/demo" else {"tools": [], "total": 0}))
    denied = Decision(allow=False, reason="not on weekends")
    with GatewayClient(transport=transport, authorizer=lambda request: denied,
                       audit=CallableSink(events.append)) as client:
        with pytest.raises(AuthorizationDenied, match="not on weekends"):
            client.invoke_tool("demo", "drop_table")
    assert [r.path for r in transport.requests] == ["/api/v1/servers/demo", "/api/v1/tools"]
    [event] = events
    assert (event.event_type, event.server, event.tool, event.outcome, event.decision) == (
        "authorization", "demo", "drop_table", "denied", "deny")


def test_a_successful_call_is_audited_with_its_attempts() -> None:
    events: list[AuditEvent] = []
    transport = scripted(MockResponse(502, json=envelope("bad_gateway")))
    with GatewayClient(transport=transport, retry=FAST,
                       audit=CallableSink(events.append)) as client:
        client.invoke_tool("demo", "echo", {"secret": "hunter2"})
    [event] = events
    assert event.outcome == "success" and (event.server, event.attempts) == ("demo", 2)
    assert "hunter2" not in repr(event.to_dict())


def test_a_connection_failure_raised_by_the_handler_is_retried_as_unsent() -> None:
    calls = []

    def handler(request: Request) -> MockResponse:
        calls.append(request)
        if len(calls) == 1:
            raise ConnectionFailed("refused")
        return ok(request)

    with GatewayClient(transport=MockTransport(handler), retry=FAST,
                       idempotency_keys=False) as client:
        assert client.invoke_tool("demo", "echo").attempts == 2


def test_discovery_and_its_errors_go_through_the_same_pipeline() -> None:
    def handler(request: Request) -> MockResponse:
        if request.path == "/api/v1/servers":
            assert request.params == {"offset": 0, "limit": 2}
            return MockResponse(200, json={"servers": [{"server_name": "a"}], "total": 1})
        return MockResponse(404, json=envelope("not_found", "no such server"))

    with GatewayClient(transport=MockTransport(handler)) as client:
        assert [s.server_name for s in client.list_servers(page_size=2)] == ["a"]
        with pytest.raises(NotFoundError, match="no such server"):
            client.get_server("ghost")


def test_the_client_closes_its_transport_and_refuses_event_streams() -> None:
    transport = MockTransport(ok)
    client = GatewayClient(transport=transport)
    with pytest.raises(TransportNotAvailableError, match="own transport"):
        client.stream_events()
    client.invoke_tool("demo", "echo")
    client.close()
    assert transport.closed
    with pytest.raises(ClientClosedError):
        client.invoke_tool("demo", "echo")


def test_concurrent_calls_share_one_transport() -> None:
    barrier = threading.Barrier(4)

    def handler(request: Request) -> MockResponse:
        barrier.wait(timeout=10)  # all four requests are in the handler at once
        return ok(request)

    with GatewayClient(transport=MockTransport(handler), max_workers=4) as client:
        futures = [client.submit("demo", "echo", {"n": n}) for n in range(4)]
        assert sorted(f.result(timeout=10).structured["n"] for f in futures) == [0, 1, 2, 3]


def test_a_handler_returning_something_else_is_a_type_error() -> None:
    with GatewayClient(transport=MockTransport(lambda request: {"x": 1})) as client:  # type: ignore[arg-type,return-value]
        with pytest.raises(TypeError, match="must return a MockResponse, not dict"):
            client.invoke_tool("demo", "echo")


@pytest.mark.parametrize("status", [0, 99, 600, True, "200"])
def test_a_mock_response_status_is_checked(status: Any) -> None:
    with pytest.raises(ValueError, match="status_code must be an int from 100 to 599"):
        MockResponse(status)


def test_raw_content_is_read_as_the_wire_would() -> None:
    def handler(request: Request) -> MockResponse:
        if request.path == "/health":
            return MockResponse(503, content=b"<html>down</html>")
        return MockResponse(200, content=b"not json")

    with GatewayClient(transport=MockTransport(handler), retry=RetryPolicy(attempts=1)) as client:
        with pytest.raises(ServiceUnavailableError) as down:
            client.health()
        with pytest.raises(ProtocolError, match="not valid JSON"):
            client.invoke_tool("demo", "echo")
    assert down.value.status_code == 503


def test_content_with_json_is_refused() -> None:
    with pytest.raises(ValueError, match="content must be bytes, and given without json"):
        MockResponse(200, json={}, content=b"{}")


def test_a_client_dropped_without_close_is_freed_at_once_and_releases_its_transport() -> None:
    # No reference cycle through the pipeline: refcounting alone frees the client, so its
    # finalizer releases what it owns without waiting for the cyclic garbage collector.
    transport = MockTransport(ok)
    client = GatewayClient(transport=transport)
    client.invoke_tool("demo", "echo")
    dropped = weakref.ref(client)
    gc.disable()
    try:
        del client
        assert dropped() is None and transport.closed
    finally:
        gc.enable()
