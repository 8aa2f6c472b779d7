"""Edge cases of the HTTP transport, with `responses` standing in for the gateway.

`responses` mocks at the requests adapter, so urllib3's retry loop does not run here: the
client is built with ``attempts=1`` and retries are integration-tested against LocalGateway.
"""

from __future__ import annotations

import io
import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import responses

from sark_sync import (
    APIError,
    AuthenticationError,
    AuthorizationDenied,
    BadRequestError,
    GatewayClient,
    Health,
    IdempotencyConflictError,
    NotFoundError,
    PayloadTooLargeError,
    ProtocolError,
    RateLimitError,
    RetryPolicy,
    ServerError,
    ServiceUnavailableError,
    UpstreamError,
    UpstreamTimeoutError,
)

BASE = "http://gateway.test"
INVOKE = f"{BASE}/api/v1/invoke"
OK_INVOKE = {"request_id": "r-1", "server": "srv", "tool": "echo",
             "result": {"content": [{"type": "text", "text": "hi"}], "isError": False}}


@pytest.fixture
def mock() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock() as rsps:
        yield rsps


def _client(**kwargs: Any) -> GatewayClient:
    return GatewayClient(BASE, **{"api_key": "k", "retry": RetryPolicy(attempts=1), **kwargs})


@pytest.fixture
def client() -> Iterator[GatewayClient]:
    with _client() as gateway:
        yield gateway


# -- bodies that break the contract ----------------------------------------------------------------


def test_a_2xx_html_body_is_a_protocol_error_naming_the_content_type(
    mock: responses.RequestsMock, client: GatewayClient
) -> None:
    mock.get(f"{BASE}/health", body="<html>login</html>", content_type="text/html; charset=utf-8")
    with pytest.raises(ProtocolError) as info:
        client.health()
    assert "Content-Type 'text/html; charset=utf-8'" in info.value.message
    assert (info.value.status_code, info.value.method, info.value.url) == (
        200, "GET", f"{BASE}/health")


def test_invalid_json_is_a_protocol_error(mock: responses.RequestsMock,
                                          client: GatewayClient) -> None:
    mock.get(f"{BASE}/health", body='{"status": "healthy"', content_type="application/json")
    with pytest.raises(ProtocolError, match=r"^response is not valid JSON \(20 bytes\)"):
        client.health()


def test_a_content_length_above_the_limit_is_refused(mock: responses.RequestsMock) -> None:
    body = json.dumps({"status": "healthy", "pad": "x" * 100})
    mock.get(f"{BASE}/health", body=body, content_type="application/json",
             auto_calculate_content_length=True)
    with _client(max_response_bytes=64) as client, pytest.raises(ProtocolError) as info:
        client.health()
    assert info.value.message == f"response body of {len(body)} bytes exceeds the 64-byte limit"


def test_a_streamed_body_above_the_limit_is_cut_off(mock: responses.RequestsMock) -> None:
    body = json.dumps({"status": "healthy", "pad": "x" * 100}).encode()
    mock.get(f"{BASE}/health", body=io.BufferedReader(io.BytesIO(body)),  # type: ignore[arg-type]
             content_type="application/json")
    with _client(max_response_bytes=64) as client, pytest.raises(ProtocolError) as info:
        client.health()
    assert info.value.message == "response body exceeds the 64-byte limit"
    assert "Content-Length" not in mock.calls[0].response.headers


def test_a_body_exactly_at_the_limit_is_accepted(mock: responses.RequestsMock) -> None:
    body = json.dumps({"status": "healthy"})
    mock.get(f"{BASE}/health", body=body, content_type="application/json")
    with _client(max_response_bytes=len(body)) as client:
        assert client.health() == Health(status="healthy")


def test_a_malformed_invoke_result_is_a_protocol_error(mock: responses.RequestsMock,
                                                       client: GatewayClient) -> None:
    mock.post(INVOKE, json={"request_id": "r-1", "result": {"content": "not a list"}})
    with pytest.raises(ProtocolError) as info:
        client.invoke_tool("srv", "echo", {})
    assert info.value.message == (
        "malformed invoke response: field 'result.content' must be a list of objects")
    assert (info.value.server, info.value.tool) == ("srv", "echo")


# -- error envelopes -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "code", "cls"),
    [
        (400, "invalid_request", BadRequestError),
        (401, "unauthenticated", AuthenticationError),
        (403, "policy_denied", AuthorizationDenied),
        (404, "not_found", NotFoundError),
        (409, "idempotency_conflict", IdempotencyConflictError),
        (413, "payload_too_large", PayloadTooLargeError),
        (422, "invalid_request", BadRequestError),
        (429, "rate_limited", RateLimitError),
        (500, "internal", ServerError),
        (502, "upstream_error", UpstreamError),
        (503, "unavailable", ServiceUnavailableError),
        (504, "upstream_timeout", UpstreamTimeoutError),
    ],
)
def test_an_error_envelope_becomes_its_class_with_context(
    mock: responses.RequestsMock, client: GatewayClient, status: int, code: str, cls: type
) -> None:
    mock.post(INVOKE, status=status, json={"error": {
        "code": code, "message": "it failed", "request_id": "gw-req-9"}})
    with pytest.raises(cls) as info:
        client.invoke_tool("srv", "echo", {"q": 1})
    error = info.value
    assert type(error) is cls
    assert (error.message, error.status_code, error.code, error.request_id, error.server,
            error.tool, error.method, error.url) == (
        f"{code}: it failed", status, code, "gw-req-9", "srv", "echo", "POST", INVOKE)


def test_a_policy_denial_carries_reason_and_audit_id(mock: responses.RequestsMock,
                                                     client: GatewayClient) -> None:
    mock.post(INVOKE, status=403, json={"error": {
        "code": "policy_denied", "message": "denied", "request_id": "r",
        "reason": "critical tool needs role admin", "audit_id": "aud-42"}})
    with pytest.raises(AuthorizationDenied) as info:
        client.invoke_tool("srv", "drop_table", {})
    assert (info.value.reason, info.value.audit_id) == ("critical tool needs role admin", "aud-42")


@pytest.mark.parametrize(("status", "cls"), [(429, RateLimitError), (503, ServiceUnavailableError)])
def test_retry_after_is_on_the_error(mock: responses.RequestsMock, client: GatewayClient,
                                     status: int, cls: type) -> None:
    mock.post(INVOKE, status=status, headers={"Retry-After": "7"},
              json={"error": {"code": "x", "message": "later", "request_id": "r"}})
    with pytest.raises(cls) as info:
        client.invoke_tool("srv", "echo", {})
    assert info.value.retry_after == 7.0


def test_an_error_without_an_envelope_keeps_the_sent_request_id(mock: responses.RequestsMock,
                                                                client: GatewayClient) -> None:
    mock.get(f"{BASE}/api/v1/servers/srv", status=502, body="Bad Gateway",
             content_type="text/plain")
    with pytest.raises(UpstreamError) as info:
        client.get_server("srv")
    sent_id = mock.calls[0].request.headers["X-Request-ID"]
    assert (info.value.message, info.value.code, info.value.request_id, info.value.server) == (
        "gateway answered 502 Bad Gateway", None, sent_id, "srv")


def test_an_unhealthy_gateway_is_a_health_result_not_an_error(mock: responses.RequestsMock,
                                                              client: GatewayClient) -> None:
    mock.get(f"{BASE}/health", status=503,
             json={"status": "unhealthy", "version": "1.0.0", "servers": 2})
    assert client.health() == Health(status="unhealthy", version="1.0.0", servers=2)


def test_a_503_elsewhere_is_still_an_error(mock: responses.RequestsMock,
                                           client: GatewayClient) -> None:
    mock.get(f"{BASE}/api/v1/servers", status=503,
             json={"status": "unhealthy"})
    with pytest.raises(ServiceUnavailableError):
        client.list_servers()


def test_a_redirect_is_not_followed(mock: responses.RequestsMock, client: GatewayClient) -> None:
    mock.get(f"{BASE}/health", status=302, headers={"Location": "http://evil.test/health"})
    with pytest.raises(APIError) as info:
        client.health()
    assert type(info.value) is APIError
    assert info.value.status_code == 302
    assert "redirecting to http://evil.test/health" in info.value.message
    assert "does not follow redirects" in info.value.message
    assert [call.request.url for call in mock.calls] == [f"{BASE}/health"]


# -- what is sent ----------------------------------------------------------------------------------


def _sent(mock: responses.RequestsMock, index: int = 0) -> Any:
    return mock.calls[index].request


def test_every_request_carries_api_key_request_id_and_user_agent(
    mock: responses.RequestsMock, client: GatewayClient
) -> None:
    mock.get(f"{BASE}/health", json={"status": "healthy"})
    client.health()
    headers = _sent(mock).headers
    assert headers["X-API-Key"] == "k"
    assert uuid.UUID(headers["X-Request-ID"]).version == 4
    assert headers["User-Agent"].startswith("sark-sync/")
    assert " python/" in headers["User-Agent"]
    assert "Authorization" not in headers


def test_each_call_gets_its_own_request_id(mock: responses.RequestsMock,
                                           client: GatewayClient) -> None:
    mock.get(f"{BASE}/health", json={"status": "healthy"})
    client.health()
    client.health()
    assert _sent(mock, 0).headers["X-Request-ID"] != _sent(mock, 1).headers["X-Request-ID"]


def test_without_an_api_key_no_key_header_is_sent(mock: responses.RequestsMock,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SARK_API_KEY", raising=False)
    mock.get(f"{BASE}/health", json={"status": "healthy"})
    with GatewayClient(BASE, retry=RetryPolicy(attempts=1)) as client:
        client.health()
    assert "X-API-Key" not in _sent(mock).headers


def test_user_token_is_sent_as_a_bearer_authorization(mock: responses.RequestsMock,
                                                      client: GatewayClient) -> None:
    mock.post(INVOKE, json=OK_INVOKE)
    client.invoke_tool("srv", "echo", {}, user_token="eyJ.user.jwt")
    assert _sent(mock).headers["Authorization"] == "Bearer eyJ.user.jwt"


def test_no_authorization_header_without_a_user_token(mock: responses.RequestsMock,
                                                      client: GatewayClient) -> None:
    mock.post(INVOKE, json=OK_INVOKE)
    client.invoke_tool("srv", "echo", {})
    assert "Authorization" not in _sent(mock).headers


def test_an_idempotency_key_is_generated_by_default(mock: responses.RequestsMock,
                                                    client: GatewayClient) -> None:
    mock.post(INVOKE, json=OK_INVOKE)
    client.invoke_tool("srv", "echo", {})
    client.invoke_tool("srv", "echo", {})
    keys = [_sent(mock, i).headers["Idempotency-Key"] for i in (0, 1)]
    assert all(uuid.UUID(key).version == 4 for key in keys)
    assert keys[0] != keys[1]


def test_no_idempotency_key_when_disabled(mock: responses.RequestsMock) -> None:
    mock.post(INVOKE, json=OK_INVOKE)
    with _client(idempotency_keys=False) as client:
        client.invoke_tool("srv", "echo", {})
    assert "Idempotency-Key" not in _sent(mock).headers


@pytest.mark.parametrize("enabled", [True, False])
def test_an_explicit_idempotency_key_is_sent_as_given(mock: responses.RequestsMock,
                                                      enabled: bool) -> None:
    mock.post(INVOKE, json=OK_INVOKE)
    with _client(idempotency_keys=enabled) as client:
        client.invoke_tool("srv", "echo", {}, idempotency_key="order-42")
    assert _sent(mock).headers["Idempotency-Key"] == "order-42"


def test_the_invoke_body_is_exactly_server_tool_parameters(mock: responses.RequestsMock,
                                                           client: GatewayClient) -> None:
    mock.post(INVOKE, json=OK_INVOKE)
    client.invoke_tool("srv", "echo", {"text": "hi", "n": [1, 2]}, user_token="t",
                       idempotency_key="k1", timeout=5)
    request = _sent(mock)
    assert json.loads(request.body) == {"server": "srv", "tool": "echo",
                                        "parameters": {"text": "hi", "n": [1, 2]}}
    assert request.headers["Content-Type"] == "application/json"


def test_no_parameters_are_sent_as_an_empty_object(mock: responses.RequestsMock,
                                                   client: GatewayClient) -> None:
    mock.post(INVOKE, json=OK_INVOKE)
    client.invoke_tool("srv", "echo")
    assert json.loads(_sent(mock).body) == {"server": "srv", "tool": "echo", "parameters": {}}


def test_listing_sends_offset_and_limit_from_page_and_page_size(mock: responses.RequestsMock,
                                                                client: GatewayClient) -> None:
    mock.get(f"{BASE}/api/v1/tools", json={"tools": [], "total": 0})
    client.list_tools("srv", page=3, page_size=20)
    assert _sent(mock).url == f"{BASE}/api/v1/tools?offset=40&limit=20&server=srv"
