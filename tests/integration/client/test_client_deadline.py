"""One deadline per call bounds every attempt and every wait (docs/gateway/ERROR_HANDLING.md)."""

from __future__ import annotations

import time
from typing import Callable

import pytest

import sark_sync
from sark_sync.testing import Fault, LocalGateway

Make = Callable[..., sark_sync.GatewayClient]

PATIENT_RETRY = sark_sync.RetryPolicy(attempts=10, backoff_base=0.2, backoff_max=0.4)


@pytest.mark.parametrize("retry", [sark_sync.RetryPolicy(attempts=1), PATIENT_RETRY])
def test_timeout_1_against_a_5s_delay_raises_deadline_exceeded_within_1_3s(
    make_client: Make, gateway: LocalGateway, retry: sark_sync.RetryPolicy
) -> None:
    client = make_client(retry=retry)
    gateway.add_fault(Fault(path="/api/v1/servers", delay=5.0, times=None))
    started = time.monotonic()
    with pytest.raises(sark_sync.DeadlineExceeded) as caught:
        client.list_servers(timeout=1)
    elapsed = time.monotonic() - started
    assert isinstance(caught.value, TimeoutError)
    assert 0.9 <= elapsed < 1.3
    assert caught.value.timeout == 1.0
    assert isinstance(caught.value.last_error, sark_sync.TransportTimeout)


def test_deadline_covers_retries_and_backoff(make_client: Make, gateway: LocalGateway) -> None:
    client = make_client(retry=PATIENT_RETRY)
    gateway.add_fault(Fault(path="/api/v1/servers", status=503, delay=0.3, times=None))
    started = time.monotonic()
    with pytest.raises(sark_sync.DeadlineExceeded) as caught:
        client.list_servers(timeout=1)
    assert time.monotonic() - started < 1.3
    assert 1 <= (caught.value.attempts or 0) < 10
    assert isinstance(caught.value.last_error, (sark_sync.ServiceUnavailableError,
                                                sark_sync.TransportTimeout))


def test_client_wide_timeout_applies_to_every_call(make_client: Make, gateway: LocalGateway
                                                   ) -> None:
    client = make_client(timeout=sark_sync.Timeouts(connect=1, read=5, deadline=0.5))
    gateway.add_fault(Fault(path="/health", delay=3.0))
    started = time.monotonic()
    with pytest.raises(sark_sync.DeadlineExceeded):
        client.health()
    assert time.monotonic() - started < 0.8


def test_slow_drip_body_cannot_outlive_the_deadline(make_client: Make, gateway: LocalGateway
                                                    ) -> None:
    client = make_client(retry=sark_sync.RetryPolicy(attempts=1))
    gateway.add_fault(Fault(path="/api/v1/servers", slow_body=0.2, times=None))
    started = time.monotonic()
    with pytest.raises(sark_sync.DeadlineExceeded):
        client.list_servers(timeout=1)
    assert time.monotonic() - started < 1.3


def test_submitted_call_deadline_counts_time_spent_queued(make_client: Make,
                                                          gateway: LocalGateway) -> None:
    client = make_client(max_workers=1, retry=sark_sync.RetryPolicy(attempts=1))
    gateway.add_fault(Fault(delay=1.0, server="demo"))
    first = client.submit("demo", "echo", {}, timeout=5)
    second = client.submit("other", "ping", {}, timeout=0.5)
    with pytest.raises(sark_sync.DeadlineExceeded):
        second.result(timeout=5)
    assert first.result(timeout=5).is_error is False
