"""HTTPSink against a real receiving server on 127.0.0.1: delivery, failures, close, fork.

The contract under test (see ``sark_sync/governance/_audit_http.py``): delivery is
at-least-once and in order; a batch whose answer never came (a dropped connection) may arrive
twice, with the same ``Idempotency-Key`` and event ids, while failures the server reports (5xx,
429) never duplicate anything. Nothing is lost: what cannot be delivered is in the fallback
log, counted. The API key travels only in ``X-Gateway-Api-Key``; no log line holds it.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import threading
import time
from collections import Counter, deque
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from support import child_env, reap, wait_for

import sark_sync
import sark_sync.governance
from sark_sync.governance.audit import AuditEvent, HTTPSink
from sark_sync.testing import LocalGateway

API_KEY = "audit-itest-key-9f8e7d6c5b4a"
FAST = sark_sync.RetryPolicy(attempts=4, backoff_base=0.01, backoff_max=0.05)
PATH = "/api/v1/gateway/audit"
#: Longer than any wait in these tests is expected to take.
WAIT = 15.0


@dataclass
class Received:
    headers: dict[str, str]
    events: list[dict[str, Any]]


class Receiver:
    """What the server saw, and what it should do with the next requests.

    ``plan`` holds one action per coming request: ``"503"``, ``"502"``, ``"429"`` (answer that
    status without storing), ``"drop-after-read"`` (store the batch, then close the connection
    without an answer), ``"drop-before-read"`` (close without reading), ``"hang"`` (wait for
    ``release``, then close). Past the plan, batches are stored and answered 200.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.plan: deque[str] = deque()
        self.batches: list[Received] = []
        self.paths: list[str] = []
        self.release = threading.Event()

    def next_action(self, path: str) -> str:
        with self.lock:
            self.paths.append(path)
            return self.plan.popleft() if self.plan else "200"

    def store(self, headers: dict[str, str], body: bytes) -> int:
        events = json.loads(body)["events"]
        with self.lock:
            self.batches.append(Received(headers, events))
        return len(events)

    def event_ids(self) -> list[str]:
        with self.lock:
            return [e["event_id"] for batch in self.batches for e in batch.events]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # TCP_NODELAY: no 40 ms delayed-ACK stalls between batches
    timeout = 10  # an idle keep-alive connection cannot hold a handler thread forever
    receiver: Receiver

    def do_POST(self) -> None:
        action = self.receiver.next_action(self.path)
        if action == "drop-before-read":
            self.close_connection = True
            return
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if action == "hang":
            self.receiver.release.wait(WAIT)
            self.close_connection = True
            return
        if action == "drop-after-read":
            self.receiver.store(dict(self.headers), body)
            self.close_connection = True
            return
        if action in ("503", "502", "429"):
            self.send_response(int(action))
            if action == "429":
                self.send_header("Retry-After", "0")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        count = self.receiver.store(dict(self.headers), body)
        payload = json.dumps({"accepted": count}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[tuple[Receiver, str]]:
    state = Receiver()
    server = ThreadingHTTPServer(("127.0.0.1", 0),
                                 type("BoundHandler", (Handler,), {"receiver": state}))
    server.daemon_threads = False  # server_close() joins the handler threads
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              name="audit-receiver")
    thread.start()
    try:
        yield state, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        state.release.set()
        server.shutdown()
        server.server_close()
        thread.join(WAIT)


@pytest.fixture(autouse=True)
def _key_never_logged(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    caplog.set_level(logging.DEBUG)  # urllib3's and requests' debug lines included
    yield
    assert API_KEY not in caplog.text
    assert "tok-raw" not in caplog.text


def events(count: int, prefix: str = "") -> list[AuditEvent]:
    return [AuditEvent(server="demo", tool="echo", outcome="success", request_id=f"{prefix}{n}",
                       parameters={"n": n, "token": "tok-raw"}) for n in range(count)]


def make(url: str, **options: Any) -> HTTPSink:
    options.setdefault("retry", FAST)
    return HTTPSink(url, api_key=API_KEY, **options)


def fallback_lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    return [json.loads(r.getMessage()) for r in caplog.records
            if r.name == "sark_sync.audit.fallback"]


def audit_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "sark_sync-audit-http"]


def test_every_event_is_delivered_once_in_order_in_batches(
    receiver: tuple[Receiver, str],
) -> None:
    state, url = receiver
    sent = events(250)
    sink = make(url, batch_size=100, flush_interval=60)
    for one in sent:
        sink.emit(one)
    sink.close()
    assert [len(b.events) for b in state.batches] == [100, 100, 50]
    assert state.event_ids() == [e.event_id for e in sent]
    assert state.paths == [PATH] * 3
    for batch in state.batches:
        assert batch.headers["X-Gateway-Api-Key"] == API_KEY
        assert batch.headers["Content-Type"] == "application/json"
    assert state.batches[0].events[0] == sent[0].to_dict()
    assert state.batches[0].events[0]["parameters"] == {"n": 0, "token": "[secure]"}
    assert (sink.sent, sink.dropped_to_fallback, sink.failed_batches) == (250, 0, 0)
    assert audit_threads() == []


def test_first_attempts_failing_with_503_502_and_429_lose_and_duplicate_nothing(
    receiver: tuple[Receiver, str], caplog: pytest.LogCaptureFixture
) -> None:
    state, url = receiver
    state.plan.extend(["503", "502", "429"])
    sent = events(30)
    sink = make(url, batch_size=10, flush_interval=60)
    for one in sent:
        sink.emit(one)
    sink.close()
    assert state.event_ids() == [e.event_id for e in sent]
    assert len(state.paths) == 6  # 3 failed attempts of the first batch, then 3 batches
    assert (sink.sent, sink.retries, sink.dropped_to_fallback) == (30, 3, 0)
    assert fallback_lines(caplog) == []


def test_a_batch_whose_answer_was_lost_is_sent_again_with_the_same_key(
    receiver: tuple[Receiver, str],
) -> None:
    state, url = receiver
    state.plan.append("drop-after-read")  # stored, but the sink never hears so
    sent = events(5)
    sink = make(url, flush_interval=60)
    for one in sent:
        sink.emit(one)
    sink.close()
    ids = state.event_ids()
    assert Counter(ids) == Counter({e.event_id: 2 for e in sent})  # at-least-once
    first, second = state.batches
    assert first.headers["Idempotency-Key"] == second.headers["Idempotency-Key"]
    assert first.events == second.events  # a receiver can deduplicate by event_id
    assert (sink.sent, sink.retries, sink.dropped_to_fallback) == (5, 1, 0)


def test_connections_dropped_before_reading_lose_nothing(receiver: tuple[Receiver, str]) -> None:
    state, url = receiver
    state.plan.extend(["drop-before-read", "drop-before-read"])
    sent = events(20)
    sink = make(url, batch_size=20, flush_interval=60)
    for one in sent:
        sink.emit(one)
    sink.close()
    assert state.event_ids() == [e.event_id for e in sent]
    assert (sink.sent, sink.retries) == (20, 2)


def test_events_are_sent_after_the_flush_interval_without_close(
    receiver: tuple[Receiver, str],
) -> None:
    state, url = receiver
    sink = make(url, flush_interval=0.05)
    try:
        sink.emit(only := events(1)[0])
        wait_for(state.event_ids, WAIT, what="the event to arrive")
        assert state.event_ids() == [only.event_id]
    finally:
        sink.close()


def test_a_server_down_for_good_puts_the_events_in_the_fallback_log(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with socket.socket() as probe:  # a port nobody listens on: connections are refused
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    sent = events(7)
    sink = make(f"http://127.0.0.1:{port}", batch_size=5, flush_interval=60)
    for one in sent:
        sink.emit(one)
    sink.close()
    assert fallback_lines(caplog) == [e.to_dict() for e in sent]
    assert (sink.sent, sink.dropped_to_fallback, sink.failed_batches, sink.retries) == (
        0, 7, 2, 6)
    assert "audit batch of 5 events not delivered" in caplog.text
    assert "after 4 attempts (ConnectionError)" in caplog.text
    assert audit_threads() == []


def test_close_is_bounded_when_the_server_never_answers(
    receiver: tuple[Receiver, str], caplog: pytest.LogCaptureFixture
) -> None:
    state, url = receiver
    state.plan.extend(["hang"] * 10)
    sent = events(3)
    sink = make(url, flush_interval=0, timeout=0.5)
    for one in sent:
        sink.emit(one)
    wait_for(lambda: state.paths, WAIT, what="the first request")
    started = time.monotonic()
    sink.close(timeout=0.3)
    elapsed = time.monotonic() - started
    assert elapsed < 2.0  # the request in flight times out after 0.5 s; no retry after close
    assert audit_threads() == []
    assert sorted(e["event_id"] for e in fallback_lines(caplog)) == sorted(
        e.event_id for e in sent)
    assert sink.dropped_to_fallback == 3 and sink.sent == 0


@pytest.mark.parametrize("wrap", ["sink", "auditor"])
def test_a_clients_close_flushes_a_callers_sink_within_its_close_timeout(
    receiver: tuple[Receiver, str], caplog: pytest.LogCaptureFixture, wrap: str
) -> None:
    """Steps: SARK hangs; a client audits to the caller's HTTPSink (given as a sink, then
    inside the caller's Auditor); the call is made; client.close() returns within about the
    sink's close_timeout instead of waiting for every retry, and leaves the sink running;
    SARK comes back and the caller's close() delivers the event: nothing is lost."""
    state, url = receiver
    state.plan.extend(["hang"] * 50)
    sink = make(url, flush_interval=0, timeout=5.0, close_timeout=0.5)
    audit: object = sink if wrap == "sink" else sark_sync.governance.Auditor([sink])
    with LocalGateway(api_keys=("k",)) as gw:
        gw.add_server("demo")
        gw.add_tool("demo", "echo", lambda parameters: parameters)
        client = sark_sync.GatewayClient(gw.url, api_key="k", audit=audit)
        client.invoke_tool("demo", "echo", {"a": 1})
        wait_for(lambda: state.paths, WAIT, what="the first audit request")
        started = time.monotonic()
        client.close()
        elapsed = time.monotonic() - started
    assert elapsed < 2.0
    assert audit_threads() != []  # the caller's sink is still theirs, still running
    with state.lock:
        state.plan.clear()
    state.release.set()  # SARK is back: the hung request fails, its retry is stored
    sink.close(timeout=5.0)
    delivered = [e["operation"] for batch in state.batches for e in batch.events]
    assert delivered == ["invoke_tool"] and fallback_lines(caplog) == []
    assert audit_threads() == []


@pytest.mark.stress
def test_8_threads_x_500_events_arrive_exactly_once(receiver: tuple[Receiver, str]) -> None:
    state, url = receiver
    sink = make(url, batch_size=100, flush_interval=0.01)
    start = threading.Barrier(8)
    emitted: list[list[AuditEvent]] = [events(500, prefix=f"{w}-") for w in range(8)]

    def work(worker: int) -> None:
        start.wait()
        for one in emitted[worker]:
            sink.emit(one)

    threads = [threading.Thread(target=work, args=(w,)) for w in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    sink.close()
    ids = state.event_ids()
    assert len(ids) == 4000
    assert set(ids) == {e.event_id for batch in emitted for e in batch}
    assert all(len(b.events) <= 100 for b in state.batches)
    for worker in range(8):  # each thread's events arrive in the order it emitted them
        mine = [e["request_id"] for b in state.batches for e in b.events
                if e["request_id"].startswith(f"{worker}-")]
        assert mine == [f"{worker}-{n}" for n in range(500)]
    assert sink.sent == 4000


@pytest.mark.fork
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_a_forked_child_delivers_its_own_events_with_its_own_thread(
    receiver: tuple[Receiver, str],
) -> None:
    state, url = receiver
    sink = make(url, flush_interval=60)
    parent_event, child_event = events(1, "parent-")[0], events(1, "child-")[0]
    sink.emit(parent_event)  # queued; the parent's thread is waiting for the interval
    assert len(audit_threads()) == 1
    pid = os.fork()
    if pid == 0:  # the child: never return into pytest
        status = 1
        try:
            fresh = sink.pending == 0 and sink._thread is None
            sink.emit(child_event)
            sink.close()
            status = 0 if fresh and sink.sent == 1 else 2
        finally:
            os._exit(status)
    assert reap(pid, timeout=WAIT) == 0
    assert state.event_ids() == [child_event.event_id]  # the child did not send the parent's
    sink.close()
    assert state.event_ids() == [child_event.event_id, parent_event.event_id]
    assert sink.sent == 1


def test_a_sink_never_closed_is_flushed_at_interpreter_exit(
    receiver: tuple[Receiver, str],
) -> None:
    state, url = receiver
    script = (
        "import sys\n"
        "from sark_sync.governance.audit import AuditEvent, HTTPSink\n"
        f"sink = HTTPSink({url!r}, api_key={API_KEY!r}, flush_interval=60)\n"
        "sink.emit(AuditEvent(request_id='at-exit'))\n"
        "sys.exit(0)  # no close(): the daemon thread cannot hold the exit, atexit flushes\n"
    )
    env = dict(os.environ, **child_env())
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                          timeout=WAIT, check=False)
    assert done.returncode == 0, done.stderr
    assert [e["request_id"] for b in state.batches for e in b.events] == ["at-exit"]
    assert API_KEY.encode() not in done.stderr
