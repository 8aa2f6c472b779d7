"""A call's ``headers=``: extra HTTP headers on the gateway's request (every attempt), refused
for a local (stdio) server and for the headers the client and HTTP own; never logged."""

from __future__ import annotations

import logging

import pytest

from sark_sync import GatewayClient, RetryPolicy, ValidationError
from sark_sync.testing import MockResponse, MockTransport
from sark_sync.transports import Request

FAST = RetryPolicy(attempts=3, backoff_base=0.0, jitter=False)
SECRET = "Bearer s3cr3t-t0ken"


def ok(request: Request) -> MockResponse:
    return MockResponse(200, json={"result": {"content": [], "structuredContent": {}}})


def test_a_calls_headers_go_on_its_request_beside_the_clients_own() -> None:
    transport = MockTransport(ok)
    with GatewayClient(transport=transport) as client:
        client.invoke_tool("demo", "echo", headers={"X-Tenant": "acme"}, user_token="t0k",
                           idempotency_key="k-1")
        client.invoke_tool("demo", "echo")
    first, second = transport.requests
    assert first.headers["X-Tenant"] == "acme"
    assert (first.headers["Authorization"], first.headers["Idempotency-Key"]) == (
        "Bearer t0k", "k-1")
    assert "X-Tenant" not in second.headers  # per call, not sticky


def test_a_retried_call_sends_its_headers_on_every_attempt() -> None:
    answers = [MockResponse(503, json={"error": {"code": "unavailable", "message": "m"}})]
    transport = MockTransport(lambda request: answers.pop(0) if answers else ok(request))
    with GatewayClient(transport=transport, retry=FAST) as client:
        assert client.invoke_tool("demo", "echo", headers={"X-A": "1"}).attempts == 2
    assert [r.headers["X-A"] for r in transport.requests] == ["1", "1"]


def test_submitted_calls_carry_their_headers() -> None:
    transport = MockTransport(ok)
    with GatewayClient(transport=transport) as client:
        futures = [client.submit("demo", "echo", headers={"X-N": str(n)}) for n in range(5)]
        for future in futures:
            future.result(timeout=5)
    assert sorted(r.headers["X-N"] for r in transport.requests) == ["0", "1", "2", "3", "4"]


def test_an_authorization_header_is_sent_as_given_without_a_user_token() -> None:
    transport = MockTransport(ok)
    with GatewayClient(transport=transport) as client:
        client.invoke_tool("demo", "echo", headers={"authorization": SECRET})
    assert transport.requests[0].headers["authorization"] == SECRET


def test_a_callers_request_id_is_the_calls_request_id_whatever_its_case() -> None:
    transport = MockTransport(ok)
    with GatewayClient(transport=transport, retry=FAST) as client:
        client.invoke_tool("demo", "echo", headers={"x-request-id": "trace-42"})
    [request] = transport.requests
    assert request.headers["X-Request-ID"] == "trace-42"
    assert [k for k in request.headers if k.lower() == "x-request-id"] == ["X-Request-ID"]


@pytest.mark.parametrize("name", [
    "Host", "content-length", "Transfer-Encoding", "CONNECTION", "Keep-Alive", "Upgrade", "TE",
    "Content-Type", "Mcp-Session-Id", "MCP-Protocol-Version", "Mcp-Param-Region",
    "Idempotency-Key", "Last-Event-ID",
])
def test_headers_the_client_or_http_owns_are_refused_before_anything_is_sent(name: str) -> None:
    transport = MockTransport(ok)
    with GatewayClient(transport=transport) as client:
        with pytest.raises(ValidationError, match="is set by the client") as caught:
            client.invoke_tool("demo", "echo", headers={name: "value-xyz"})
        with pytest.raises(ValidationError):
            client.submit("demo", "echo", headers={name: "value-xyz"})
    assert transport.requests == []
    assert "value-xyz" not in str(caught.value)


@pytest.mark.parametrize(("headers", "words"), [
    ({"X Bad": "v"}, "HTTP token"),
    ({"": "v"}, "HTTP token"),
    ({"X-\u00e9": "v"}, "HTTP token"),
    ({"X-A": SECRET + "\r\nX-Injected: 1"}, "headers['X-A']"),
    ({"X-A": 5}, "headers['X-A'] must be a non-empty str"),
    ({"X-A": "1", "x-a": "2"}, "given twice"),
    ({f"X-{n}": "v" for n in range(65)}, "at most 64"),
    ("X-A: 1", "mapping"),
])
def test_malformed_headers_raise_validation_error_without_quoting_a_value(
        headers: object, words: str) -> None:
    with GatewayClient(transport=MockTransport(ok)) as client:
        with pytest.raises(ValidationError) as caught:
            client.invoke_tool("demo", "echo", headers=headers)  # type: ignore[arg-type]
    assert words in str(caught.value) and "s3cr3t" not in str(caught.value)


def test_authorization_in_headers_and_a_user_token_together_are_refused() -> None:
    with GatewayClient(transport=MockTransport(ok)) as client:
        with pytest.raises(ValidationError, match="pass one of them") as caught:
            client.invoke_tool("demo", "echo", headers={"Authorization": SECRET},
                               user_token="t0k")
        view = client.with_options(headers={"Authorization": SECRET})
        with pytest.raises(ValidationError, match="pass one of them"):
            view.invoke_tool("demo", "echo", user_token="t0k")
    assert "s3cr3t" not in str(caught.value)


def test_a_local_stdio_server_refuses_a_calls_headers_before_it_is_started() -> None:
    # Under the unit isolation a started server would fail the test: nothing is spawned.
    with GatewayClient(transport=MockTransport(ok),
                       local_servers={"files": ["python", "server.py"]}) as client:
        with pytest.raises(ValidationError, match="local server \\(stdio\\)") as caught:
            client.invoke_tool("files", "read", headers={"X-A": "1"})
        with pytest.raises(ValidationError, match="local server"):
            client.submit("files", "read", headers={"X-A": "1"})
    assert (caught.value.server, caught.value.tool) == ("files", "read")


def test_header_values_never_reach_the_logs(caplog: pytest.LogCaptureFixture) -> None:
    answers = [MockResponse(502, json={"error": {"code": "bad_gateway", "message": "m"}})]
    transport = MockTransport(lambda request: answers.pop(0) if answers else ok(request))
    caplog.set_level(logging.DEBUG, logger="sark_sync")
    with GatewayClient(transport=transport, retry=FAST) as client:
        client.invoke_tool("demo", "echo", headers={"Authorization": SECRET, "X-Key": "k3y-9"})
        with pytest.raises(ValidationError):
            client.invoke_tool("demo", "echo", headers={"Host": SECRET})
    assert len(transport.requests) == 2  # a retry happened (and was logged)
    text = "\n".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records)
    assert "s3cr3t" not in text and "k3y-9" not in text
