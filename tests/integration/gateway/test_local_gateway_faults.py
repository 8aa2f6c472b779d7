"""LocalGateway Idempotency-Key deduplication and fault injection, over real loopback sockets."""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any, Callable

import pytest
import requests
from local_gateway_helpers import (
    AUTH,
    error_of,
    gateway_threads,
    invoke,
    invoke_request,
    raw_exchange,
)
from support import API_KEY, OTHER_KEY, WAIT, build_gateway, wait_for

from sark_sync.testing import Fault, LocalGateway


@pytest.fixture
def gateway(make_gateway: Callable[..., LocalGateway]) -> LocalGateway:
    return make_gateway("local_gateway")


# -- idempotency -----------------------------------------------------------------------------


def test_a_repeated_idempotency_key_replays_without_running_the_tool(
    gateway: LocalGateway, http: requests.Session
) -> None:
    headers = {"Idempotency-Key": "op-1"}
    first = invoke(http, gateway, parameters={"n": 1}, headers={**headers, "X-Request-ID": "r1"})
    again = invoke(http, gateway, parameters={"n": 1}, headers={**headers, "X-Request-ID": "r2"})
    assert first.status_code == again.status_code == 200
    assert again.content == first.content and again.json()["request_id"] == "r1"
    assert again.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers
    assert gateway.tool_runs("demo", "echo") == 1
    assert invoke(http, gateway, parameters={"n": 1}).status_code == 200
    assert gateway.tool_runs("demo", "echo") == 2


def test_an_idempotency_key_reused_with_another_body_is_a_conflict(
    gateway: LocalGateway, http: requests.Session
) -> None:
    assert invoke(http, gateway, parameters={"n": 1}, headers={"Idempotency-Key": "op"}).ok
    error_of(
        invoke(http, gateway, parameters={"n": 2}, headers={"Idempotency-Key": "op"}),
        409,
        "idempotency_conflict",
    )
    error_of(
        invoke(http, gateway, "text", {"n": 1}, headers={"Idempotency-Key": "op"}),
        409,
        "idempotency_conflict",
    )
    assert (gateway.tool_runs("demo", "echo"), gateway.tool_runs("demo", "text")) == (1, 0)


def test_idempotency_keys_are_scoped_per_api_key(
    make_gateway: Callable[..., LocalGateway], http: requests.Session
) -> None:
    gateway = make_gateway("local_gateway", api_keys=(API_KEY, OTHER_KEY))
    assert invoke(http, gateway, headers={"Idempotency-Key": "same"}).ok
    other = invoke(
        http,
        gateway,
        parameters={"other": True},
        headers={"X-API-Key": OTHER_KEY, "Idempotency-Key": "same"},
    )
    assert other.status_code == 200 and "Idempotent-Replayed" not in other.headers
    assert gateway.tool_runs("demo", "echo") == 2


@pytest.mark.parametrize("key", ["", "x" * 256, "has space", "tab\tkey"])
def test_malformed_idempotency_keys_are_invalid_requests(
    gateway: LocalGateway, http: requests.Session, key: str
) -> None:
    error_of(invoke(http, gateway, headers={"Idempotency-Key": key}), 400, "invalid_request")
    assert gateway.tool_runs("demo", "echo") == 0


def test_concurrent_requests_with_one_key_run_the_tool_once(gateway: LocalGateway) -> None:
    release = threading.Event()

    def slow(parameters: dict[str, Any]) -> object:
        release.wait(WAIT)
        return {"ran": True}

    gateway.add_tool("demo", "slow", slow)
    responses: list[requests.Response] = []
    lock = threading.Lock()

    def call() -> None:
        with requests.Session() as session:
            response = invoke(session, gateway, "slow", headers={"Idempotency-Key": "together"})
            response.content  # noqa: B018 - read the body before the session closes
            with lock:
                responses.append(response)

    threads = [threading.Thread(target=call) for _ in range(8)]
    for thread in threads:
        thread.start()
    wait_for(lambda: len(gateway.requests) == 8)
    assert gateway.tool_runs("demo", "slow") == 1
    release.set()
    for thread in threads:
        thread.join(WAIT)
    assert [r.status_code for r in responses] == [200] * 8
    assert len({r.content for r in responses}) == 1
    assert sum(r.headers.get("Idempotent-Replayed") == "true" for r in responses) == 7
    assert gateway.tool_runs("demo", "slow") == 1
    assert gateway.max_open_connections == 8


# -- faults ----------------------------------------------------------------------------------


def test_a_status_fault_answers_instead_of_the_tool_with_retry_after(
    gateway: LocalGateway, http: requests.Session
) -> None:
    fault = gateway.add_fault(Fault(status=503, retry_after=2, times=2))
    for _ in range(2):
        response = invoke(http, gateway, headers={"X-Request-ID": "rid"})
        error = error_of(response, 503, "unavailable")
        assert error["request_id"] == "rid" and response.headers["Retry-After"] == "2"
    assert invoke(http, gateway).status_code == 200
    assert fault.hits == 2
    assert gateway.tool_runs("demo", "echo") == 1
    assert [r.path for r in gateway.requests] == ["/api/v1/invoke"] * 3


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (400, "invalid_request"),
        (401, "unauthenticated"),
        (403, "policy_denied"),
        (404, "not_found"),
        (409, "idempotency_conflict"),
        (413, "payload_too_large"),
        (429, "rate_limited"),
        (500, "internal_error"),
        (502, "upstream_error"),
        (503, "unavailable"),
        (504, "upstream_timeout"),
    ],
)
def test_status_faults_carry_the_error_code_of_their_status(
    gateway: LocalGateway, http: requests.Session, status: int, code: str
) -> None:
    gateway.add_fault(Fault(status=status, retry_after="Wed, 21 Oct 2037 07:28:00 GMT"))
    response = invoke(http, gateway)
    error = error_of(response, status, code)
    assert response.headers["Retry-After"] == "Wed, 21 Oct 2037 07:28:00 GMT"
    if status == 403:
        assert error["reason"] and uuid.UUID(error["audit_id"])
    assert gateway.tool_runs("demo", "echo") == 0


def test_faults_apply_one_per_request_in_the_order_added(
    gateway: LocalGateway, http: requests.Session
) -> None:
    first = gateway.add_fault(Fault(status=502))
    second = gateway.add_fault(Fault(status=504))
    never = gateway.add_fault(Fault(status=500, times=0))
    forever = gateway.add_fault(Fault(path="/health", status=503, times=None))
    codes = [invoke(http, gateway).status_code for _ in range(3)]
    assert codes == [502, 504, 200]
    assert [http.get(f"{gateway.url}/health").status_code for _ in range(3)] == [503] * 3
    assert (first.hits, second.hits, never.hits, forever.hits) == (1, 1, 0, 3)
    gateway.clear_faults()
    assert http.get(f"{gateway.url}/health").status_code == 200


def test_faults_match_on_method_path_and_invoked_server(
    gateway: LocalGateway, http: requests.Session
) -> None:
    only_data = gateway.add_fault(Fault(server="data-mcp", status=502, times=None))
    only_post = gateway.add_fault(Fault(path="/api/v1/servers", method="post", status=500))
    assert invoke(http, gateway).status_code == 200
    assert invoke(http, gateway, "query", server="data-mcp").status_code == 502
    assert http.get(f"{gateway.url}/api/v1/servers", headers=AUTH).status_code == 200
    assert http.post(f"{gateway.url}/api/v1/servers", headers=AUTH).status_code == 500
    assert (only_data.hits, only_post.hits) == (1, 1)
    assert gateway.tool_runs("data-mcp", "query") == 0


def test_a_drop_fault_closes_the_connection_without_answering(
    gateway: LocalGateway, http: requests.Session
) -> None:
    fault = gateway.add_fault(Fault(drop=True))
    with pytest.raises(requests.ConnectionError):
        invoke(http, gateway)
    assert invoke(http, gateway).status_code == 200
    assert fault.hits == 1 and gateway.tool_runs("demo", "echo") == 1
    assert len(gateway.requests) == 2 and gateway.connections_accepted == 2


def test_a_truncate_fault_runs_the_tool_and_cuts_its_answer(
    gateway: LocalGateway, http: requests.Session
) -> None:
    gateway.add_fault(Fault(truncate=True))
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        invoke(http, gateway)
    assert gateway.tool_runs("demo", "echo") == 1


def test_a_truncate_fault_with_a_status_cuts_the_injected_answer(gateway: LocalGateway) -> None:
    gateway.add_fault(Fault(status=503, truncate=True))
    status, headers, body = raw_exchange(gateway, invoke_request(gateway))
    assert status == 503 and int(headers["content-length"]) > len(body) > 0
    assert gateway.tool_runs("demo", "echo") == 0


def test_a_delay_fault_answers_after_the_delay(
    gateway: LocalGateway, http: requests.Session
) -> None:
    gateway.add_fault(Fault(path="/health", delay=0.2))
    started = time.monotonic()
    assert http.get(f"{gateway.url}/health").status_code == 200
    assert time.monotonic() - started >= 0.2


def test_a_slow_body_fault_sends_the_body_in_paced_pieces(
    gateway: LocalGateway, http: requests.Session
) -> None:
    expected = http.get(f"{gateway.url}/health").content
    gateway.add_fault(Fault(path="/health", slow_body=0.02))
    started = time.monotonic()
    response = http.get(f"{gateway.url}/health")
    pieces = -(-len(expected) // 16)
    assert response.content == expected and pieces >= 3
    assert time.monotonic() - started >= pieces * 0.02


def test_body_and_content_type_faults_replace_the_answer(
    gateway: LocalGateway, http: requests.Session
) -> None:
    gateway.add_fault(Fault(body=b"<html>bad gateway</html>", content_type="text/html", status=502))
    gateway.add_fault(Fault(body="not json"))
    gateway.add_fault(Fault(content_type="text/plain"))
    html = invoke(http, gateway)
    assert (html.status_code, html.headers["Content-Type"], html.text) == (
        502,
        "text/html",
        "<html>bad gateway</html>",
    )
    plain = invoke(http, gateway)
    assert (plain.status_code, plain.headers["Content-Type"], plain.text) == (
        200,
        "application/json",
        "not json",
    )
    retyped = invoke(http, gateway)
    assert retyped.headers["Content-Type"] == "text/plain"
    assert retyped.json()["result"]["structuredContent"] == {}
    assert gateway.tool_runs("demo", "echo") == 1


def test_an_oversize_body_fault(gateway: LocalGateway, http: requests.Session) -> None:
    big = b'{"pad": "' + b"x" * 5_000_000 + b'"}'
    gateway.add_fault(Fault(body=big))
    assert len(invoke(http, gateway).content) == len(big)


def test_fault_arguments_are_validated() -> None:
    for bad in ({"times": -1}, {"delay": -0.1}, {"status": 99}, {"status": 600}, {"slow_body": -1}):
        with pytest.raises(ValueError):
            Fault(**bad)


def test_stop_interrupts_a_delayed_answer(http: requests.Session) -> None:
    gateway = build_gateway("local_gateway").start()
    gateway.add_fault(Fault(delay=60))
    errors: list[Exception] = []

    def call() -> None:
        try:
            invoke(http, gateway)
        except requests.ConnectionError as exc:
            errors.append(exc)

    thread = threading.Thread(target=call)
    thread.start()
    wait_for(lambda: len(gateway.requests) == 1)
    started = time.monotonic()
    gateway.stop()
    assert time.monotonic() - started < 2.0
    thread.join(WAIT)
    assert len(errors) == 1 and gateway_threads() == []
    assert gateway.tool_runs("demo", "echo") == 0
