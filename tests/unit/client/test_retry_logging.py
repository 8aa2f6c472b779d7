"""One log record per retry (``sark_sync.retry``) and per breaker transition
(``sark_sync.breaker``), each with ``request_id``, ``server``, ``tool`` and ``attempt`` as
attributes of the LogRecord; never a header, parameter or credential."""

from __future__ import annotations

import logging

import pytest

from sark_sync import (
    BreakerPolicy,
    CircuitOpenError,
    GatewayClient,
    RetryPolicy,
    ServiceUnavailableError,
)
from sark_sync.resilience import Breaker
from sark_sync.testing import MockResponse, MockTransport
from sark_sync.transports import Request

FAST = RetryPolicy(attempts=3, backoff_base=0.0, jitter=False)
SECRET = "s3cr3t-t0ken"


def ok(request: Request) -> MockResponse:
    if request.path == "/api/v1/servers":
        return MockResponse(200, json={"servers": [], "total": 0})
    return MockResponse(200, json={"result": {"content": [], "structuredContent": {}}})


def failing(times: int, status: int = 503) -> MockTransport:
    left = [times]

    def handler(request: Request) -> MockResponse:
        if left[0] > 0:
            left[0] -= 1
            return MockResponse(status, json={"error": {"code": "unavailable",
                                                         "message": "m"}})
        return ok(request)

    return MockTransport(handler)


def records(caplog: pytest.LogCaptureFixture, name: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == name]


def test_each_retry_is_one_info_record_naming_the_call(caplog: pytest.LogCaptureFixture
                                                       ) -> None:
    caplog.set_level(logging.INFO, logger="sark_sync")
    transport = failing(2)
    with GatewayClient(transport=transport, retry=FAST) as client:
        result = client.invoke_tool("demo", "echo", {"password": SECRET}, user_token=SECRET)
    assert result.attempts == 3
    retries = records(caplog, "sark_sync.retry")
    request_id = transport.requests[0].headers["X-Request-ID"]
    assert [(r.levelno, r.request_id, r.server, r.tool, r.attempt) for r in retries] == [
        (logging.INFO, request_id, "demo", "echo", 1),
        (logging.INFO, request_id, "demo", "echo", 2)]
    assert [(r.error_type, r.status_code, r.wait) for r in retries] == [
        ("ServiceUnavailableError", 503, 0.0)] * 2
    assert retries[0].getMessage() == (
        "retrying demo/echo after attempt 1 of 3 failed with ServiceUnavailableError (503); "
        "waiting 0.000s")


def test_a_call_that_is_not_retried_logs_no_retry(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="sark_sync")
    with GatewayClient(transport=failing(5), retry=RetryPolicy(attempts=1),
                       breaker=BreakerPolicy(enabled=False)) as client:
        with pytest.raises(ServiceUnavailableError):
            client.invoke_tool("demo", "echo")
    assert records(caplog, "sark_sync.retry") == []


def test_the_last_failed_attempt_is_not_a_retry(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="sark_sync.retry")
    with GatewayClient(transport=failing(5), retry=FAST,
                       breaker=BreakerPolicy(enabled=False)) as client:
        with pytest.raises(ServiceUnavailableError) as caught:
            client.invoke_tool("demo", "echo")
    assert caught.value.attempts == 3
    assert [r.attempt for r in records(caplog, "sark_sync.retry")] == [1, 2]


def test_a_discovery_retry_names_its_request_without_a_tool(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="sark_sync.retry")
    transport = failing(1)
    with GatewayClient(transport=transport, retry=FAST) as client:
        client.list_servers()
    [record] = records(caplog, "sark_sync.retry")
    assert (record.request_id, record.server, record.tool, record.attempt) == (
        transport.requests[0].headers["X-Request-ID"], None, None, 1)
    assert record.getMessage().startswith("retrying a request after attempt 1 of 3")


def test_breaker_transitions_are_logged_open_half_open_closed(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="sark_sync.breaker")
    now = [0.0]
    transport = failing(2)
    with GatewayClient(transport=transport, retry=RetryPolicy(attempts=1),
                       breaker=BreakerPolicy(failure_threshold=2, recovery_timeout=10)
                       ) as client:
        breaker = client.breaker_for("demo")
        breaker._clock = lambda: now[0]  # move time instead of sleeping
        for _ in range(2):
            with pytest.raises(ServiceUnavailableError):
                client.invoke_tool("demo", "echo")
        with pytest.raises(CircuitOpenError):
            client.invoke_tool("demo", "echo")  # refused: no transition, no record
        now[0] = 11.0
        assert client.invoke_tool("demo", "echo").attempts == 1  # the probe
    opened, probing, closed = records(caplog, "sark_sync.breaker")
    failed_id = transport.requests[1].headers["X-Request-ID"]
    probe_id = transport.requests[2].headers["X-Request-ID"]
    assert (opened.levelno, opened.state, opened.previous_state, opened.failures) == (
        logging.WARNING, "open", "closed", 2)
    assert (opened.request_id, opened.server, opened.tool, opened.attempt) == (
        failed_id, "demo", "echo", 1)
    assert opened.breaker == "mock://gateway/demo"
    assert opened.getMessage() == ("circuit 'mock://gateway/demo' is open (was closed) after "
                                   "2 consecutive failures (last: ServiceUnavailableError)")
    assert (probing.levelno, probing.state, probing.previous_state) == (
        logging.INFO, "half_open", "open")
    assert (closed.levelno, closed.state, closed.previous_state) == (
        logging.INFO, "closed", "half_open")
    assert (probing.request_id, closed.request_id, closed.server, closed.tool) == (
        probe_id, probe_id, "demo", "echo")


def test_a_breaker_used_alone_logs_its_transitions_without_a_call(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="sark_sync.breaker")
    breaker = Breaker("alone", BreakerPolicy(failure_threshold=1, recovery_timeout=60))
    with pytest.raises(ServiceUnavailableError):
        breaker.call(lambda: (_ for _ in ()).throw(ServiceUnavailableError("down")))
    [record] = records(caplog, "sark_sync.breaker")
    assert (record.breaker, record.state, record.request_id, record.server, record.tool,
            record.attempt) == ("alone", "open", None, None, None, None)


def test_no_record_carries_a_secret(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="sark_sync")
    with GatewayClient(transport=failing(3), retry=FAST, api_key=SECRET + "-key",
                       breaker=BreakerPolicy(failure_threshold=1, recovery_timeout=0)
                       ) as client:
        for expected in (ServiceUnavailableError, None):  # opens, then the probe closes it
            try:
                client.invoke_tool("demo", "echo", {"password": SECRET}, user_token=SECRET,
                                   headers={"X-Secret": SECRET})
            except ServiceUnavailableError as exc:
                assert expected is type(exc)
    assert len(records(caplog, "sark_sync.retry")) == 2
    assert [r.state for r in records(caplog, "sark_sync.breaker")] == [
        "open", "half_open", "closed"]
    for record in caplog.records:
        assert SECRET not in f"{record.getMessage()} {record.__dict__}"
