"""Which requests are retried, how often, and how long the client waits.

The rules: docs/gateway/ERROR_HANDLING.md, "What is retried, and when".
"""

from __future__ import annotations

import time
from typing import Callable

import pytest
from support import paths

import sark_sync
from sark_sync.testing import Fault, LocalGateway

Make = Callable[..., sark_sync.GatewayClient]


def test_get_meeting_503_503_200_succeeds_after_exactly_3_requests(
    client: sark_sync.GatewayClient, gateway: LocalGateway
) -> None:
    gateway.add_fault(Fault(path="/api/v1/servers", status=503, times=2))
    servers = client.list_servers()
    assert [s.name for s in servers] == ["demo", "other"]
    assert paths(gateway) == ["GET /api/v1/servers"] * 3
    assert len({r.headers["X-Request-ID"] for r in gateway.requests}) == 1


def test_post_without_idempotency_protection_is_not_retried_on_503(
    make_client: Make, gateway: LocalGateway
) -> None:
    client = make_client(idempotency_keys=False)
    gateway.add_fault(Fault(status=503))
    with pytest.raises(sark_sync.ServiceUnavailableError) as caught:
        client.invoke_tool("demo", "echo", {"x": 1})
    assert paths(gateway) == ["POST /api/v1/invoke"]
    assert caught.value.attempts == 1
    assert "Idempotency-Key" not in gateway.requests[0].headers


def test_post_with_idempotency_key_is_retried_and_the_tool_runs_once(
    make_client: Make, gateway: LocalGateway
) -> None:
    client = make_client(idempotency_keys=False)
    # The first attempt runs the tool, then its answer is lost: the connection drops.
    gateway.add_fault(Fault(drop=True))
    result = client.invoke_tool("demo", "echo", {"x": 1}, idempotency_key="order-42")
    assert result.structured == {"x": 1}
    assert result.attempts == 2
    assert paths(gateway) == ["POST /api/v1/invoke"] * 2
    assert {r.headers["Idempotency-Key"] for r in gateway.requests} == {"order-42"}
    assert gateway.tool_runs("demo", "echo") <= 1
    # A caller repeating the call with the same key gets the stored answer; the tool does not
    # run again.
    runs = gateway.tool_runs("demo", "echo")
    again = client.invoke_tool("demo", "echo", {"x": 1}, idempotency_key="order-42")
    assert again.structured == {"x": 1}
    assert gateway.tool_runs("demo", "echo") == runs == 1


def test_auto_idempotency_key_makes_invocations_retryable(
    client: sark_sync.GatewayClient, gateway: LocalGateway
) -> None:
    gateway.add_fault(Fault(status=502))
    result = client.invoke_tool("demo", "echo", {"x": 1})
    assert result.attempts == 2
    keys = [r.headers["Idempotency-Key"] for r in gateway.requests]
    assert len(keys) == 2 and keys[0] == keys[1]
    assert gateway.tool_runs("demo", "echo") == 1


def test_read_only_tool_is_retried_without_a_key(make_client: Make, gateway: LocalGateway
                                                 ) -> None:
    client = make_client(idempotency_keys=False)
    client.list_tools(server="demo")  # the client learns the tool's readOnlyHint
    gateway.clear_requests()
    gateway.add_fault(Fault(status=503))
    assert client.invoke_tool("demo", "read_only").attempts == 2
    assert paths(gateway) == ["POST /api/v1/invoke"] * 2


def test_429_with_retry_after_1_is_waited_out(client: sark_sync.GatewayClient,
                                              gateway: LocalGateway) -> None:
    gateway.add_fault(Fault(status=429, retry_after=1))
    started = time.monotonic()
    result = client.invoke_tool("demo", "echo", {"x": 1})
    waited = gateway.requests[1].received_at - gateway.requests[0].received_at
    assert result.attempts == 2
    assert 0.95 <= waited < 1.5
    assert time.monotonic() - started < 2.0


def test_retry_after_600_fails_fast_with_retry_after(client: sark_sync.GatewayClient,
                                                     gateway: LocalGateway) -> None:
    gateway.add_fault(Fault(status=429, retry_after=600))
    started = time.monotonic()
    with pytest.raises(sark_sync.RateLimitError) as caught:
        client.invoke_tool("demo", "echo")
    assert time.monotonic() - started < 0.5
    assert caught.value.retry_after == 600
    assert caught.value.status_code == 429 and caught.value.code == "rate_limited"
    assert paths(gateway) == ["POST /api/v1/invoke"]


def test_retry_after_beyond_the_deadline_raises_the_503_itself_at_once(
    client: sark_sync.GatewayClient, gateway: LocalGateway
) -> None:
    # Not DeadlineExceeded: "try later" handlers of ServiceUnavailableError must see it.
    gateway.add_fault(Fault(path="/api/v1/servers", status=503, retry_after=60))
    started = time.monotonic()
    with pytest.raises(sark_sync.ServiceUnavailableError) as caught:
        client.list_servers(timeout=5)
    assert time.monotonic() - started < 0.5
    assert (caught.value.attempts, caught.value.retry_after, caught.value.retryable) == (
        1, 60, True)


def test_retry_after_max_zero_never_waits_on_a_retry_after(
    make_client: Make, gateway: LocalGateway
) -> None:
    # The setting for a Celery worker: a Retry-After is never slept in the worker.
    client = make_client(retry=sark_sync.RetryPolicy(retry_after_max=0, attempts=5))
    gateway.add_fault(Fault(path="/api/v1/servers", status=503, retry_after=1, times=5))
    started = time.monotonic()
    with pytest.raises(sark_sync.ServiceUnavailableError) as caught:
        client.list_servers()
    assert time.monotonic() - started < 0.5
    assert (caught.value.attempts, caught.value.retry_after) == (1, 1)
    assert paths(gateway) == ["GET /api/v1/servers"]


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (400, sark_sync.BadRequestError),
        (401, sark_sync.AuthenticationError),
        (403, sark_sync.AuthorizationDenied),
        (404, sark_sync.NotFoundError),
        (422, sark_sync.BadRequestError),
    ],
)
def test_client_errors_are_never_retried(
    client: sark_sync.GatewayClient, gateway: LocalGateway, status: int,
    error: type[sark_sync.GatewayError],
) -> None:
    gateway.add_fault(Fault(path=None, status=status, times=None))
    with pytest.raises(error) as caught:
        client.list_servers()
    with pytest.raises(error):
        client.invoke_tool("demo", "read_only")
    assert caught.value.status_code == status
    assert paths(gateway) == ["GET /api/v1/servers", "POST /api/v1/invoke"]


def test_retries_stop_after_the_configured_attempts(make_client: Make, gateway: LocalGateway
                                                    ) -> None:
    client = make_client(retry=sark_sync.RetryPolicy(attempts=4, backoff_base=0.0))
    gateway.add_fault(Fault(path="/api/v1/servers", status=502, times=None))
    with pytest.raises(sark_sync.UpstreamError) as caught:
        client.list_servers()
    assert caught.value.attempts == 4
    assert len(paths(gateway)) == 4


def test_connection_drop_on_get_is_retried(client: sark_sync.GatewayClient,
                                           gateway: LocalGateway) -> None:
    gateway.add_fault(Fault(path="/api/v1/servers", drop=True))
    assert len(client.list_servers()) == 2
    assert len(paths(gateway)) == 2


def test_refused_connection_raises_connection_failed_after_retries(make_client: Make) -> None:
    import socket

    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = make_client(url=f"http://127.0.0.1:{port}")
    with pytest.raises(sark_sync.ConnectionFailed) as caught:
        client.list_servers()
    assert caught.value.attempts == 3
    assert "refused" in str(caught.value).lower()


def test_get_whose_body_is_cut_short_is_retried(client: sark_sync.GatewayClient,
                                                gateway: LocalGateway) -> None:
    gateway.add_fault(Fault(path="/api/v1/servers", truncate=True))
    assert [s.name for s in client.list_servers()] == ["demo", "other"]
    assert paths(gateway) == ["GET /api/v1/servers"] * 2


def test_invocation_whose_answer_is_lost_is_retried_and_runs_once(
    client: sark_sync.GatewayClient, gateway: LocalGateway
) -> None:
    # The tool runs, then its answer is cut off mid-body; the retry carries the same
    # Idempotency-Key, so the gateway answers from its store.
    gateway.add_fault(Fault(truncate=True))
    result = client.invoke_tool("demo", "echo", {"x": 1})
    assert result.structured == {"x": 1} and result.attempts == 2
    assert gateway.tool_runs("demo", "echo") == 1
    keys = [r.headers["Idempotency-Key"] for r in gateway.requests]
    assert len(keys) == 2 and keys[0] == keys[1]


def test_lost_answer_of_an_unprotected_invocation_is_not_retried(
    make_client: Make, gateway: LocalGateway
) -> None:
    client = make_client(idempotency_keys=False)
    gateway.add_fault(Fault(truncate=True))
    with pytest.raises(sark_sync.ProtocolError) as caught:
        client.invoke_tool("demo", "echo", {"x": 1})
    assert "cut short" in str(caught.value)
    assert paths(gateway) == ["POST /api/v1/invoke"]


def test_body_retries_share_the_policy_attempts(make_client: Make, gateway: LocalGateway
                                                ) -> None:
    client = make_client(retry=sark_sync.RetryPolicy(attempts=3, backoff_base=0))
    gateway.add_fault(Fault(path="/api/v1/servers", truncate=True, times=None))
    with pytest.raises(sark_sync.ProtocolError) as caught:
        client.list_servers()
    assert caught.value.attempts == 3
    assert len(paths(gateway)) == 3
