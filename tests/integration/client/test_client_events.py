"""GatewayClient.stream_events against the LocalGateway's event source, over real sockets.

What the stream promises: every event exactly once and in order across drops, stalls and
gateway restarts; ``stream_reset`` when the gateway could not replay; typed errors for answers
that reconnecting cannot fix; ``close()`` from any thread, promptly, releasing the connection.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Callable

import pytest
from support import blocked_in_socket_read, build_gateway, in_child, token_of, wait_for

import sark_sync
from sark_sync.testing import Fault, LocalGateway

#: A short server retry: reconnects in tests take milliseconds, not the default second.
RETRY = 0.01
#: Bound for anything that should happen at once on a loaded CI machine.
PROMPT = 5.0

Make = Callable[..., sark_sync.GatewayClient]


@pytest.fixture
def gateway(make_gateway: Callable[..., LocalGateway]) -> LocalGateway:
    """A gateway without servers: no ``server_registered`` events, so ids start at the
    first event a test publishes."""
    return make_gateway("empty", event_retry=RETRY)


def take(stream: sark_sync.EventStream, count: int) -> list[sark_sync.Event]:
    return [next(stream) for _ in range(count)]


def test_events_of_real_invocations_arrive_once_in_order_across_a_drop_every_100(
    make_gateway: Callable[..., LocalGateway], make_client: Make
) -> None:
    """5,000 tool_invoked events from real invokes by 8 workers, the stream cut every 100
    events: the client yields each one exactly once, in order, and resumes 49 times."""
    gateway = make_gateway(event_retry=RETRY)
    gateway.add_fault(Fault(path="/api/v1/events", drop_after_events=100, times=None))
    client = make_client(gateway.url, max_workers=8)
    calls = [sark_sync.ToolCall("demo", "echo", {"n": i}) for i in range(5000)]
    with client.stream_events(types=["tool_invoked"]) as stream, \
            ThreadPoolExecutor(1) as producer:
        invoked = producer.submit(client.invoke_many, calls)
        def end_stream_if_failed(done: Future[list[sark_sync.ToolResult]]) -> None:
            if done.exception() is not None:  # no event will come: do not wait for them
                stream.close()

        invoked.add_done_callback(end_stream_if_failed)
        events = take(stream, 5000)
        results = invoked.result(timeout=120)
    ids = [int(e.id or 0) for e in events]
    assert ids == sorted(set(ids)) and len(ids) == 5000  # increasing: no duplicate, in order
    assert {e.data["request_id"] for e in events} == {r.request_id for r in results}
    assert {(e.type, e.data["server"], e.data["tool"], e.data["outcome"]) for e in events} == {
        ("tool_invoked", "demo", "echo", "success")}
    assert stream.reconnects >= 49


def test_a_gateway_restarted_on_the_same_port_is_followed_and_ids_continue(
    make_client: Make,
) -> None:
    first = build_gateway("empty", event_retry=RETRY).start()
    port = int(first.url.rsplit(":", 1)[1])
    client = make_client(url=first.url)
    try:
        with client.stream_events(types=["tick"]) as stream:
            ids = [first.publish_event("tick", {"n": n}) for n in range(10)]
            assert [e.id for e in take(stream, 10)] == [str(i) for i in ids]
            first.stop()
            with build_gateway("empty", event_retry=RETRY, port=port,
                               first_event_id=ids[-1] + 1) as second:
                later = [second.publish_event("tick", {"n": n}) for n in range(10, 20)]
                events = take(stream, 10)
        assert [e.id for e in events] == [str(i) for i in later]
        assert [e.data["n"] for e in events] == list(range(10, 20))
    finally:
        first.stop()


def test_a_restarted_gateway_that_lost_the_ids_sends_stream_reset_first(make_client: Make) -> None:
    first = build_gateway("empty", event_retry=RETRY).start()
    port = int(first.url.rsplit(":", 1)[1])
    client = make_client(url=first.url)
    try:
        with client.stream_events(types=["tick"]) as stream:
            last = [first.publish_event("tick", {"n": n}) for n in range(5)][-1]
            assert take(stream, 5)[-1].id == str(last)
            first.stop()
            with build_gateway("empty", event_retry=RETRY, port=port) as second:  # ids from 1 again
                after_id = second.publish_event("tick", {"n": "after"})
                reset, after = take(stream, 2)
        assert after_id < last
        assert (reset.type, reset.id) == ("stream_reset", str(last))  # a reset has no id
        assert reset.data == {"last_event_id": last, "oldest_available": 1, "reason": "future"}
        assert (after.type, after.id, after.data) == ("tick", str(after_id), {"n": "after"})
    finally:
        first.stop()


def test_resuming_from_an_id_that_fell_out_of_the_buffer_yields_stream_reset_first(
    gateway: LocalGateway, make_client: Make
) -> None:
    for n in range(10_005):  # the buffer holds 10,000: ids 1..5 are gone
        gateway.publish_event("tick", {"n": n})
    with make_client().stream_events(last_event_id=2) as stream:
        reset, oldest = take(stream, 2)
    assert reset.type == "stream_reset"
    assert reset.data == {"last_event_id": 2, "oldest_available": 6, "reason": "expired"}
    assert (oldest.id, oldest.data) == ("6", {"n": 5})


def test_resuming_from_a_known_id_replays_only_what_followed(
    gateway: LocalGateway, make_client: Make
) -> None:
    for n in range(10):
        gateway.publish_event("tick", {"n": n})
    with make_client().stream_events(last_event_id=7) as stream:
        assert [(e.id, e.data["n"]) for e in take(stream, 3)] == [("8", 7), ("9", 8), ("10", 9)]


def test_a_stalled_stream_is_replaced_after_the_idle_timeout_without_a_gap(
    gateway: LocalGateway, make_client: Make
) -> None:
    gateway.add_fault(Fault(path="/api/v1/events", stall_after_events=3))
    for n in range(6):
        gateway.publish_event("tick", {"n": n})
    started = time.monotonic()
    with make_client().stream_events(last_event_id=0, idle_timeout=0.5) as stream:
        events = take(stream, 6)
    assert [e.data["n"] for e in events] == list(range(6))
    assert stream.reconnects == 1
    assert 0.5 <= time.monotonic() - started < PROMPT


def test_pings_keep_a_quiet_stream_alive_and_never_become_events(make_client: Make) -> None:
    with build_gateway("empty", event_retry=RETRY, ping_interval=0.05) as gateway:
        with make_client(url=gateway.url).stream_events(idle_timeout=0.3) as stream:
            timer = threading.Timer(1.0, gateway.publish_event, ("tick", {"n": "late"}))
            timer.start()
            try:
                event = next(stream)  # one second of pings: nothing to yield, no stall either
            finally:
                timer.cancel()
        assert (event.type, event.data) == ("tick", {"n": "late"})
        assert stream.reconnects == 0


@pytest.mark.parametrize("framing", ["chunked", "close"])
def test_each_event_is_yielded_at_once_whatever_the_framing(framing: str, make_client: Make
                                                            ) -> None:
    """No read waits for a buffer to fill: each event published alone arrives promptly (a
    fixed-size read would hold it until more bytes came, up to the end of the body)."""
    with build_gateway("empty", event_retry=RETRY, event_framing=framing) as gateway, \
            make_client(url=gateway.url).stream_events() as stream:
        delays = []
        for n in range(20):
            sent = time.monotonic()
            gateway.publish_event("tick", {"n": n})
            assert next(stream).data == {"n": n}
            delays.append(time.monotonic() - sent)
    assert sorted(delays)[-2] < 0.1, delays  # generous for CI; typically well under 1 ms


def test_close_from_another_thread_ends_iteration_at_once_and_releases_the_connection(
    gateway: LocalGateway, make_client: Make
) -> None:
    stream = make_client().stream_events()
    wait_for(lambda: gateway.open_connections == 1, PROMPT, what="the stream to connect")
    outcome: list[Any] = []

    def iterate() -> None:
        outcome.extend(stream)  # blocks in a read: no events come

    reader = threading.Thread(target=iterate)
    reader.start()
    wait_for(lambda: blocked_in_socket_read(reader), PROMPT, what="the reader to block in its read")
    started = time.monotonic()
    stream.close()
    reader.join(PROMPT)
    assert not reader.is_alive() and outcome == []
    assert time.monotonic() - started < 1.0
    assert stream.closed
    wait_for(lambda: gateway.open_connections == 0, PROMPT, what="the connection to close")


def test_closing_the_client_closes_its_streams(gateway: LocalGateway, make_client: Make) -> None:
    client = make_client()
    streams = [client.stream_events(), client.stream_events(types="tool_invoked")]
    client.close()
    assert all(s.closed for s in streams)
    assert [list(s) for s in streams] == [[], []]
    wait_for(lambda: gateway.open_connections == 0, PROMPT, what="the connections to close")


def test_types_filter_on_the_gateway_and_in_the_client_but_never_stream_reset(
    gateway: LocalGateway, make_client: Make
) -> None:
    gateway.publish_event("server_health", {"server": "demo", "status": "healthy"})
    gateway.publish_event("tick", {"n": 1})
    with make_client().stream_events(types=["tick"], last_event_id=0) as stream:
        assert [(e.type, e.id) for e in take(stream, 1)] == [("tick", "2")]
    assert gateway.requests[-1].query == {"types": "tick"}
    with make_client().stream_events(types="tick", last_event_id=999) as stream:
        assert [e.type for e in take(stream, 2)] == ["stream_reset", "tick"]


def test_concurrent_streams_of_one_client_keep_their_own_position(
    gateway: LocalGateway, make_client: Make
) -> None:
    client = make_client()
    for n in range(10):
        gateway.publish_event("tick" if n % 2 else "tock", {"n": n})
    with client.stream_events(types=["tick"], last_event_id=0) as ticks, \
            client.stream_events(last_event_id=8) as tail:
        assert [e.data["n"] for e in take(ticks, 5)] == [1, 3, 5, 7, 9]
        assert [e.data["n"] for e in take(tail, 2)] == [8, 9]
        assert (ticks.last_event_id, tail.last_event_id) == ("10", "10")


def test_a_wrong_api_key_fails_at_once_without_reconnecting(
    gateway: LocalGateway, make_client: Make
) -> None:
    gateway.clear_requests()
    with pytest.raises(sark_sync.AuthenticationError, match=r"401|unauthenticated"):
        make_client(api_key="wrong").stream_events()
    assert [r.path for r in gateway.requests] == ["/api/v1/events"]


@pytest.mark.parametrize("status", [429, 503])
def test_retry_after_is_honoured_before_connecting_again(
    status: int, gateway: LocalGateway, make_client: Make
) -> None:
    gateway.add_fault(Fault(path="/api/v1/events", status=status, retry_after=0.3, times=2))
    gateway.publish_event("tick", {"n": 1})
    started = time.monotonic()
    with make_client().stream_events(last_event_id=0) as stream:
        assert next(stream).data == {"n": 1}
    assert 0.6 <= time.monotonic() - started < PROMPT
    assert len([r for r in gateway.requests if r.path == "/api/v1/events"]) == 3


def test_a_retry_after_beyond_the_policy_fails_fast_with_retry_after(
    gateway: LocalGateway, make_client: Make
) -> None:
    gateway.add_fault(Fault(path="/api/v1/events", status=503, retry_after=600))
    started = time.monotonic()
    with pytest.raises(sark_sync.ServiceUnavailableError) as info:
        make_client().stream_events()
    assert info.value.retry_after == 600 and time.monotonic() - started < 1.0


def test_it_gives_up_after_max_reconnects_consecutive_failures(make_client: Make) -> None:
    with build_gateway("empty", event_retry=RETRY) as gateway:
        url = gateway.url
        gateway.add_fault(Fault(path="/api/v1/events", status=502, times=None))
        with pytest.raises(sark_sync.ServerError, match="gave up after 3 consecutive") as info:
            make_client(url=url).stream_events(max_reconnects=2)
        assert info.value.status_code == 502
        assert len([r for r in gateway.requests if r.path == "/api/v1/events"]) == 3


def test_the_failure_count_restarts_at_every_event_never_at_a_bare_connect(
    gateway: LocalGateway, make_client: Make
) -> None:
    """Drops right after connecting (no event) count as failures; drops after an event do
    not. With max_reconnects=2: five event-bearing drops are survived, three bare ones not."""
    for n in range(5):
        gateway.publish_event("tick", {"n": n})
    gateway.add_fault(Fault(path="/api/v1/events", drop_after_events=1, times=5))
    gateway.add_fault(Fault(path="/api/v1/events", drop_after_events=0, times=None))
    with make_client().stream_events(last_event_id=0, max_reconnects=2) as stream:
        assert [e.data["n"] for e in take(stream, 5)] == list(range(5))
        with pytest.raises(sark_sync.ConnectionFailed, match="ended before any event"):
            next(stream)
    assert stream.closed


def test_an_event_over_max_event_bytes_ends_the_stream_with_protocol_error(
    gateway: LocalGateway, make_client: Make
) -> None:
    gateway.publish_event("tick", {"blob": "x" * 5000})
    with make_client().stream_events(last_event_id=0, max_event_bytes=4096) as stream, \
            pytest.raises(sark_sync.ProtocolError, match="max_event_bytes"):
        next(stream)
    assert stream.closed


def test_invalid_arguments_are_refused_before_connecting(
    gateway: LocalGateway, make_client: Make
) -> None:
    client = make_client()
    gateway.clear_requests()
    bad: list[dict[str, Any]] = [
        {"types": []}, {"types": ["a b"]}, {"types": [1]}, {"last_event_id": 1.5},
        {"last_event_id": "a\nb"}, {"idle_timeout": 0}, {"idle_timeout": float("nan")},
        {"max_reconnects": -1}, {"max_event_bytes": 0}, {"max_reconnects": True},
    ]
    for options in bad:
        with pytest.raises(sark_sync.ValidationError):
            client.stream_events(**options)
    assert gateway.requests == []


def test_a_client_restricted_to_http_refuses_event_streams(make_client: Make) -> None:
    with pytest.raises(sark_sync.TransportNotAvailableError, match="sse"):
        make_client(transport_mode="http").stream_events()


def test_tool_invoked_events_describe_the_call(
    make_gateway: Callable[..., LocalGateway], make_client: Make
) -> None:
    gateway = make_gateway(event_retry=RETRY)
    token = token_of(gateway, "alice")
    client = make_client(gateway.url)
    with client.stream_events(types=["tool_invoked"]) as stream:
        ok = client.invoke_tool("demo", "echo", {"password": "hunter2"}, user_token=token)
        started = time.monotonic()
        failed = client.invoke_tool("demo", "fail")
        elapsed_ms = (time.monotonic() - started) * 1000
        first, second = take(stream, 2)
    assert first.data["request_id"] == ok.request_id
    assert (first.data["principal"], first.data["outcome"]) == ("alice", "success")
    assert (second.data["request_id"], second.data["outcome"]) == (failed.request_id,
                                                                   "tool_error")
    assert 0 <= second.data["latency_ms"] <= elapsed_ms  # the gateway's side of the call
    assert "hunter2" not in repr(first) + repr(second)


def test_event_repr_hides_sensitive_values() -> None:
    event = sark_sync.Event("7", "tick", {"api_key": "s3cr3t", "n": 1})
    assert "s3cr3t" not in repr(event) and "'n': 1" in repr(event)


def test_the_default_retry_policy_waits_the_gateways_retry(make_client: Make) -> None:
    """The gateway's ``retry:`` (here 0.3 s) is the base of the backoff: a reconnect is
    neither immediate hammering nor the policy's own base."""
    with build_gateway("empty", event_retry=0.3) as gateway:
        gateway.add_fault(Fault(path="/api/v1/events", drop_after_events=1, times=1))
        for n in range(2):
            gateway.publish_event("tick", {"n": n})
        client = make_client(url=gateway.url, retry=sark_sync.RetryPolicy(jitter=False,
                                                                      backoff_base=5.0))
        started = time.monotonic()
        with client.stream_events(last_event_id=0) as stream:
            assert [e.data["n"] for e in take(stream, 2)] == [0, 1]
            assert stream.retry_ms == 300
        assert 0.3 <= time.monotonic() - started < 2.0


@pytest.mark.fork
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_a_forked_child_cannot_use_its_parents_stream(gateway: LocalGateway, make_client: Make
                                                      ) -> None:
    stream = make_client().stream_events()
    gateway.publish_event("tick", {"n": 1})

    def use_in_child() -> Any:
        try:
            next(stream)
            return "no error"
        except sark_sync.ClientClosedError as exc:
            return str(exc)
        finally:
            stream.close()  # forgets, never shuts the parent's socket down

    outcome = in_child(use_in_child)
    assert "belongs to the process that opened it" in outcome
    assert next(stream).data == {"n": 1}  # the parent's stream is intact
    stream.close()


def test_a_client_closed_while_a_stream_connects_closes_that_stream_too(
    gateway: LocalGateway, make_client: Make
) -> None:
    gateway.add_fault(Fault(path="/api/v1/events", delay=0.5))
    client = make_client()
    outcome: list[BaseException] = []

    def connect() -> None:
        try:
            client.stream_events()
        except BaseException as exc:
            outcome.append(exc)

    worker = threading.Thread(target=connect)
    worker.start()
    wait_for(lambda: gateway.requests, PROMPT, what="the stream request")
    client.close()
    worker.join(PROMPT)
    assert [type(e) for e in outcome] == [sark_sync.ClientClosedError]
    wait_for(lambda: gateway.open_connections == 0, PROMPT, what="the connection to close")


def test_close_from_a_signal_handler_of_the_reading_thread_ends_iteration_at_once(
    gateway: LocalGateway, make_client: Make
) -> None:
    stream = make_client().stream_events()
    previous = signal.signal(signal.SIGUSR1, lambda *_: stream.close())
    timer = threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGUSR1))
    started = time.monotonic()
    timer.start()
    try:
        assert list(stream) == []  # the handler runs in this thread, inside next()
    finally:
        timer.cancel()
        signal.signal(signal.SIGUSR1, previous)
    assert time.monotonic() - started < 1.5
    assert stream.closed
    wait_for(lambda: gateway.open_connections == 0, PROMPT, what="the connection to close")
