"""HTTPSink without a network: configuration, queueing, and the answers it gives up on.

``responses`` patches requests' adapter for every thread, the sink's worker included. The
delivery under real failures (refused connections, dropped connections, 5xx) is tested against
a real server in tests/integration/governance/test_audit_http_sink.py.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import responses
from requests import PreparedRequest

import sark_sync
from sark_sync._redact import Secret
from sark_sync.governance.audit import AuditEvent, HTTPSink

BASE = "https://sark.example"
ENDPOINT = BASE + "/api/v1/gateway/audit"
API_KEY = "audit-key-0123456789abcdef"
FAST = sark_sync.RetryPolicy(attempts=3, backoff_base=0.001, backoff_max=0.005)
#: Long enough that no test waits on it by accident.
WAIT = 10.0


class ListSink:
    def __init__(self) -> None:
        self.events: list[AuditEvent] = []

    def emit(self, event: AuditEvent) -> None:
        self.events.append(event)

    def close(self) -> None:
        pass


@pytest.fixture
def mock() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        yield rsps


def events(count: int, **fields: Any) -> list[AuditEvent]:
    return [AuditEvent(server="demo", tool="echo", outcome="success", request_id=str(n),
                       parameters={"n": n, "token": "tok-raw"}, **fields) for n in range(count)]


def sent_ids(mock: responses.RequestsMock) -> list[list[str]]:
    batches = []
    for call in mock.calls:
        body = call.request.body
        assert isinstance(body, bytes)
        batches.append([e["request_id"] for e in json.loads(body)["events"]])
    return batches


def make(fallback: ListSink | None = None, **options: Any) -> HTTPSink:
    options.setdefault("retry", FAST)
    options.setdefault("api_key", API_KEY)
    return HTTPSink(BASE, fallback=fallback or ListSink(), **options)


class Gate:
    """A responses callback that holds each request until released."""

    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.entered = threading.Event()
        self.release = threading.Event()

    def __call__(self, request: PreparedRequest) -> tuple[int, dict[str, str], str]:
        self.entered.set()
        assert self.release.wait(WAIT)
        return self.status, {}, "{}"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"url": "ftp://sark.example"}, "must be http:// or https://"),
        ({"url": "https://user:pw@sark.example"}, "must not carry credentials"),
        ({"api_key": ""}, "api_key is empty"),
        ({"api_key": "a\nb"}, "api_key has a control character at index 1"),
        ({"batch_size": 0}, "batch_size must be an int >= 1"),
        ({"max_queue": 1.5}, "max_queue must be an int >= 1"),
        ({"flush_interval": -1}, "flush_interval must be >= 0"),
        ({"timeout": 0}, "timeout must be > 0"),
        ({"close_timeout": float("inf")}, "close_timeout must be a finite number"),
        ({"retry": 3}, "retry must be a RetryPolicy"),
    ],
)
def test_invalid_configuration_is_refused_at_construction(options: dict[str, Any],
                                                          message: str) -> None:
    options = {"url": BASE, "api_key": API_KEY, **options}
    with pytest.raises(sark_sync.ConfigurationError, match=message) as caught:
        HTTPSink(options.pop("url"), **options)
    assert "pw" not in str(caught.value)


def test_the_key_is_in_no_repr_and_no_attribute() -> None:
    sink = make(api_key=Secret(API_KEY))
    assert repr(sink) == f"HTTPSink('{ENDPOINT}', api_key=[secure])"
    assert API_KEY not in repr(vars(sink))
    sink.close()


def test_a_sink_never_used_starts_no_thread_and_closes_at_once(
    mock: responses.RequestsMock,
) -> None:
    sink = make()
    sink.close()
    assert sink._thread is None and len(mock.calls) == 0


def test_posts_a_batch_with_the_key_header_and_redacted_parameters(
    mock: responses.RequestsMock,
) -> None:
    mock.add(responses.POST, ENDPOINT, json={"accepted": 3})
    sink = make(flush_interval=WAIT)
    for one in events(3):
        sink.emit(one)
    sink.close()
    assert sent_ids(mock) == [["0", "1", "2"]]
    request = mock.calls[0].request
    assert request.headers["X-Gateway-Api-Key"] == API_KEY
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["User-Agent"].startswith("sark-sync/")
    assert b"tok-raw" not in request.body  # type: ignore[operator]
    assert (sink.sent, sink.dropped_to_fallback, sink.pending) == (3, 0, 0)


def test_emit_returns_at_once_while_a_request_is_in_flight(mock: responses.RequestsMock) -> None:
    gate = Gate()
    mock.add_callback(responses.POST, ENDPOINT, callback=gate)
    sink = make(flush_interval=0)
    first, *rest = events(11)
    sink.emit(first)
    assert gate.entered.wait(WAIT)
    for one in rest:
        sink.emit(one)  # the worker is blocked in a request: these only queue
    assert sink.pending == 11
    gate.release.set()
    sink.close()
    assert sent_ids(mock) == [["0"], [str(n) for n in range(1, 11)]]


def test_a_full_queue_sends_events_to_the_fallback_and_counts_them(
    mock: responses.RequestsMock, caplog: pytest.LogCaptureFixture
) -> None:
    gate = Gate()
    mock.add_callback(responses.POST, ENDPOINT, callback=gate)
    fallback = ListSink()
    sink = make(fallback, flush_interval=0, max_queue=5)
    batch = events(9)
    sink.emit(batch[0])
    assert gate.entered.wait(WAIT)  # in flight, out of the queue
    for one in batch[1:]:
        sink.emit(one)
    assert fallback.events == batch[6:]
    assert sink.dropped_to_fallback == 3
    warnings = [r for r in caplog.records if "queue is full" in r.getMessage()]
    assert len(warnings) == 1  # once per overflow, not once per event
    gate.release.set()
    sink.close()
    assert sent_ids(mock) == [["0"], ["1", "2", "3", "4", "5"]]
    assert sink.sent == 6 and API_KEY not in caplog.text


@pytest.mark.parametrize("status", [400, 401, 403, 404, 413, 302, 500])
def test_a_refusal_is_not_retried_and_goes_to_the_fallback(
    mock: responses.RequestsMock, caplog: pytest.LogCaptureFixture, status: int
) -> None:
    mock.add(responses.POST, ENDPOINT, status=status,
             headers={"Location": "https://elsewhere.example/"} if status == 302 else {})
    fallback = ListSink()
    sink = make(fallback, flush_interval=0)
    batch = events(2)
    for one in batch:
        sink.emit(one)
    sink.close()
    assert len(mock.calls) in (1, 2)  # one request per batch: never a retry, never a redirect
    assert all(call.request.url == ENDPOINT for call in mock.calls)
    assert fallback.events == batch
    assert (sink.sent, sink.dropped_to_fallback, sink.retries) == (0, 2, 0)
    assert f"after 1 attempts (status {status})" in caplog.text
    assert API_KEY not in caplog.text


def test_retryable_statuses_are_retried_until_the_attempts_run_out(
    mock: responses.RequestsMock, caplog: pytest.LogCaptureFixture
) -> None:
    for status in (502, 429, 503):
        mock.add(responses.POST, ENDPOINT, status=status)
    fallback = ListSink()
    sink = make(fallback)
    sink.emit(only := events(1)[0])
    sink.close()
    assert len(mock.calls) == 3
    assert (sink.retries, sink.failed_batches, sink.dropped_to_fallback) == (2, 1, 1)
    assert fallback.events == [only]
    assert "after 3 attempts (status 503)" in caplog.text


def test_every_attempt_of_a_batch_carries_the_same_idempotency_key(
    mock: responses.RequestsMock,
) -> None:
    mock.add(responses.POST, ENDPOINT, status=503)
    mock.add(responses.POST, ENDPOINT, status=200)
    sink = make(flush_interval=WAIT)
    sink.emit(events(1)[0])
    assert sink.flush(WAIT)
    sink.emit(events(1)[0])
    sink.close()
    keys = [call.request.headers["Idempotency-Key"] for call in mock.calls]
    assert len(keys) == 3 and keys[0] == keys[1] != keys[2]


def test_a_retry_after_longer_than_allowed_gives_up_at_once(
    mock: responses.RequestsMock, caplog: pytest.LogCaptureFixture
) -> None:
    mock.add(responses.POST, ENDPOINT, status=429, headers={"Retry-After": "3600"})
    fallback = ListSink()
    sink = make(fallback)
    sink.emit(events(1)[0])
    sink.close()
    assert len(mock.calls) == 1 and len(fallback.events) == 1
    assert "Retry-After 3600s (longer than retry_after_max)" in caplog.text


def test_flush_waits_for_delivery_without_closing(mock: responses.RequestsMock) -> None:
    mock.add(responses.POST, ENDPOINT)
    sink = make(flush_interval=WAIT)
    assert sink.flush(0) is True  # nothing pending
    sink.emit(events(1)[0])
    assert sink.flush(WAIT) is True
    assert sink.sent == 1 and len(mock.calls) == 1
    sink.emit(events(1)[0])  # still open
    sink.close()
    assert sink.sent == 2


def test_flush_gives_up_after_its_timeout(mock: responses.RequestsMock) -> None:
    gate = Gate()
    mock.add_callback(responses.POST, ENDPOINT, callback=gate)
    sink = make(flush_interval=0)
    sink.emit(events(1)[0])
    assert sink.flush(0.05) is False
    gate.release.set()
    sink.close()
    assert sink.sent == 1


def test_events_emitted_after_close_go_to_the_fallback(mock: responses.RequestsMock) -> None:
    fallback = ListSink()
    sink = make(fallback)
    sink.close()
    sink.close()
    late = events(1)[0]
    sink.emit(late)
    assert fallback.events == [late] and sink.dropped_to_fallback == 1 and len(mock.calls) == 0


def test_close_with_no_time_left_sends_the_queue_to_the_fallback(
    mock: responses.RequestsMock, caplog: pytest.LogCaptureFixture
) -> None:
    mock.add(responses.POST, ENDPOINT)
    fallback = ListSink()
    sink = make(fallback, flush_interval=WAIT)
    batch = events(4)
    for one in batch:
        sink.emit(one)
    sink.close(timeout=0)
    assert len(mock.calls) == 0
    assert fallback.events == batch and sink.dropped_to_fallback == 4
    assert "after 0 attempts (close() timed out)" in caplog.text


def test_a_batch_waits_for_the_flush_interval_or_a_full_batch(
    mock: responses.RequestsMock,
) -> None:
    mock.add(responses.POST, ENDPOINT)
    sink = make(flush_interval=WAIT, batch_size=3)
    for one in events(7):
        sink.emit(one)
    assert sink.flush(WAIT)  # the two full batches went without waiting; flush sent the rest
    sink.close()
    assert sent_ids(mock) == [["0", "1", "2"], ["3", "4", "5"], ["6"]]


def test_a_fork_detected_by_pid_forgets_the_parents_queue(mock: responses.RequestsMock) -> None:
    mock.add(responses.POST, ENDPOINT)
    fallback = ListSink()
    sink = make(fallback, flush_interval=WAIT)
    sink._pid = -1  # as if the sink had been created in another process, never used there
    child_event = events(1)[0]
    sink.emit(child_event)
    sink.close()
    assert sent_ids(mock) == [["0"]] and fallback.events == []


def test_the_default_fallback_logs_undelivered_events_at_warning(
    mock: responses.RequestsMock, caplog: pytest.LogCaptureFixture
) -> None:
    mock.add(responses.POST, ENDPOINT, status=400)
    sink = HTTPSink(BASE, api_key=API_KEY, retry=FAST)
    batch = events(2)
    for one in batch:
        sink.emit(one)
    sink.close()
    logged = [r.getMessage() for r in caplog.records if r.name == "sark_sync.audit.fallback"]
    assert logged == [e.to_json() for e in batch]
    assert all(r.levelno == logging.WARNING for r in caplog.records
               if r.name == "sark_sync.audit.fallback")
    assert API_KEY not in caplog.text and "tok-raw" not in caplog.text
