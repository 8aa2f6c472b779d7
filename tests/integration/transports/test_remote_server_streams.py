"""RemoteServer's event streams against the official MCP server (mcp 2.3.0), through the
recording proxy: a response stream cut mid-call and resumed with ``Last-Event-ID``, a stream
without ids that breaks, the one listening GET stream per session, a server killed mid-call,
and a response stream that trickles past the deadline. Each test runs the 2025-11-25 wire
(sessions exist only there)."""

from __future__ import annotations

import gc
import json
import os
import queue
import signal
import threading
import time
from collections.abc import Mapping
from typing import Any, Callable

import pytest
from realcomp.fixtures import McpHttpServer
from realcomp.recording_proxy import Exchange, RecordingProxy

from sark_sync import ConnectionFailed, DeadlineExceeded, TransportTimeout
from sark_sync.transports import _guarded
from sark_sync.transports._mcp_remote import RemoteServer

pytestmark = [pytest.mark.realcomp, pytest.mark.timeout(60)]

#: The wire with sessions (and so with resumable streams and a listening stream).
WIRE = "2025-11-25"
#: The resumable mode's ``retry:`` (fixtures.MCP_HTTP_MODES["resumable"]), in seconds.
RETRY = 0.3
#: Bound for what the server sends outside a request to arrive.
ARRIVAL = 5.0

Proxy = Callable[..., RecordingProxy]
Servers = Callable[..., McpHttpServer]


def is_call(exchange: Exchange) -> bool:
    """The proxy's selector for the POST of a ``tools/call``."""
    return exchange.method == "POST" and b'"tools/call"' in exchange.body


def is_listening(exchange: Exchange) -> bool:
    """The proxy's selector for a listening GET (not a resumption)."""
    return exchange.method == "GET" and exchange.header("Last-Event-ID") is None


def gets(proxy: RecordingProxy) -> list[Exchange]:
    return [x for x in proxy.requests if x.method == "GET"]


def wait_until(predicate: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "the condition did not hold in time"
        threading.Event().wait(0.01)


def test_a_response_stream_cut_after_2_events_is_resumed_with_last_event_id_and_every_event_arrives_once(  # noqa: E501
    mcp_http_server: Servers, recording_proxy: Proxy,
) -> None:
    proxy = recording_proxy(mcp_http_server("resumable").url, cut_after_events=2, only=is_call)
    seen: list[tuple[float, float | None]] = []
    with RemoteServer(proxy.url, timeout=10, protocol_version=WIRE) as server:
        # The tool is over before the resumption (0.2 s < RETRY): everything after the cut is
        # replayed. (The SDK forwards events sent while it sets a replayed stream up to no
        # connection: an event the tool sent then would arrive only on a later resumption.)
        result = server.call_tool("steps", {"count": 5, "interval": 0.05},
                                  progress=lambda p, total, message: seen.append((p, total)))
        assert result.text == "steps 5"
        assert seen == [(1, 5), (2, 5), (3, 5), (4, 5), (5, 5)]  # each once, in order
        [cut] = proxy.cuts
        resumed = [x for x in gets(proxy) if x.header("Last-Event-ID") is not None]
    assert cut.last_event_id is not None
    assert [x.header("Last-Event-ID") for x in resumed] == [cut.last_event_id]
    [x] = resumed
    assert x.status == 200 and x.header("Accept") == "text/event-stream"
    assert x.header("Mcp-Session-Id") == server.session_id
    assert x.header("MCP-Protocol-Version") == WIRE
    assert x.at - cut.at >= RETRY - 0.02  # the server's retry: was honoured
    calls = [x for x in proxy.requests if is_call(x)]
    assert len(calls) == 1  # resumed, never sent again


def test_a_response_stream_without_event_ids_that_breaks_fails_at_once(
    mcp_http_server: Servers, recording_proxy: Proxy,
) -> None:
    proxy = recording_proxy(mcp_http_server("stateful").url, cut_after_events=1, only=is_call)
    with RemoteServer(proxy.url, timeout=10, protocol_version=WIRE) as server:
        started = time.monotonic()
        with pytest.raises(ConnectionFailed, match=r"the response stream of tools/call broke "
                           r"off .* before its answer, with no event id to resume from"):
            server.call_tool("steps", {"count": 3, "interval": 2}, progress=lambda *a: None)
        assert time.monotonic() - started < 1.0  # the interval is 2 s: nothing was waited for
        assert [x for x in gets(proxy) if x.header("Last-Event-ID")] == []
        assert server.call_tool("echo", {"text": "after"}).text == "after"  # session intact


def test_the_listening_stream_delivers_what_the_server_sends_outside_any_request(
    mcp_http_server: Servers, recording_proxy: Proxy,
) -> None:
    proxy = recording_proxy(mcp_http_server("stateful").url)
    arrived: queue.Queue[tuple[str, Mapping[str, Any]]] = queue.Queue()
    with RemoteServer(proxy.url, timeout=10, protocol_version=WIRE,
                      on_notification=lambda method, params: arrived.put((method, params))
                      ) as server:
        wait_until(lambda: any(x.status == 200 for x in gets(proxy)), ARRIVAL)
        assert server.call_tool("announce").text == "announced"
        assert arrived.get(timeout=ARRIVAL) == ("notifications/tools/list_changed", {})
        assert server.call_tool("echo", {"text": "x"}).text == "x"
        [listening] = gets(proxy)  # exactly one GET for the session
    assert listening.header("Mcp-Session-Id") == server.session_id
    assert listening.header("MCP-Protocol-Version") == WIRE
    assert listening.header("Accept") == "text/event-stream"
    assert listening.header("Last-Event-ID") is None and listening.body == b""
    posts = [json.loads(x.body) for x in proxy.requests if x.method == "POST"]
    initialized = [i for i, b in enumerate(posts) if b.get("method") == "notifications/initialized"]
    assert initialized == [1]  # the GET came after the session was initialized
    assert proxy.requests.index(listening) > 1
    assert arrived.empty()


def test_a_dropped_listening_stream_reconnects_with_last_event_id_and_loses_nothing(
    mcp_http_server: Servers, recording_proxy: Proxy,
) -> None:
    proxy = recording_proxy(mcp_http_server("resumable").url, cut_after_events=1,
                            only=is_listening)
    arrived: queue.Queue[str] = queue.Queue()
    with RemoteServer(proxy.url, timeout=10, protocol_version=WIRE,
                      on_notification=lambda method, params: arrived.put(method)) as server:
        wait_until(lambda: any(x.status == 200 for x in gets(proxy)), ARRIVAL)
        server.call_tool("announce")
        assert arrived.get(timeout=ARRIVAL) == "notifications/tools/list_changed"
        wait_until(lambda: len(proxy.cuts) == 1, ARRIVAL)
        server.call_tool("announce")  # while reconnecting, or after: replayed either way
        assert arrived.get(timeout=ARRIVAL) == "notifications/tools/list_changed"
        first, second = gets(proxy)
    assert is_listening(first)
    assert second.header("Last-Event-ID") == proxy.cuts[0].last_event_id is not None
    assert second.header("Mcp-Session-Id") == server.session_id
    assert arrived.empty()  # each once


@pytest.mark.parametrize("mode", ["stateful", "resumable"])
@pytest.mark.timeout(30)
def test_a_server_killed_mid_call_fails_the_call_within_1s(
    mode: str, mcp_http_server: Servers,
) -> None:
    peer = mcp_http_server(mode)
    killed: list[float] = []

    def kill(progress: float, total: float | None, message: str | None) -> None:
        if not killed:
            os.kill(peer.proc.pid, signal.SIGKILL)
            killed.append(time.monotonic())

    with RemoteServer(peer.url, timeout=20, protocol_version=WIRE) as server:
        with pytest.raises(ConnectionFailed, match=r"the response stream of tools/call") \
                as caught:
            server.call_tool("slow", {"seconds": 30}, progress=kill)
        assert time.monotonic() - killed[0] < 1.0
    assert peer.proc.wait(5) == -signal.SIGKILL
    if mode == "resumable":  # one resumption, refused: no loop against a dead server
        assert "resuming it failed" in str(caught.value)
    else:
        assert "no event id to resume from" in str(caught.value)


@pytest.mark.timeout(30)
def test_a_response_stream_that_trickles_past_the_deadline_is_cut_at_it(
    mcp_http_server: Servers, recording_proxy: Proxy,
) -> None:
    proxy = recording_proxy(mcp_http_server("stateful").url, trickle=0.05, only=is_call)
    with RemoteServer(proxy.url, timeout=10, protocol_version=WIRE) as server:
        started = time.monotonic()
        with pytest.raises(DeadlineExceeded, match=r"did not answer tools/call within 0\.5s") \
                as caught:
            server.call_tool("echo", {"text": "slowly"}, timeout=0.5)
        assert time.monotonic() - started < 0.5 + 0.2
        assert isinstance(caught.value.last_error, TransportTimeout)


def test_a_request_on_the_listening_stream_is_answered_with_a_post(
    mcp_http_server: Servers, recording_proxy: Proxy,
) -> None:
    proxy = recording_proxy(mcp_http_server("stateful").url)
    with RemoteServer(proxy.url, timeout=10, protocol_version=WIRE) as server:
        wait_until(lambda: any(x.status == 200 for x in gets(proxy)), ARRIVAL)
        assert server.call_tool("ping_client").text == "pinged"
    answers = [(json.loads(x.body), x.status) for x in proxy.requests
               if x.method == "POST" and b'"result"' in x.body]
    [(body, status)] = answers
    assert body == {"jsonrpc": "2.0", "id": body["id"], "result": {}} and status == 202
    assert len(gets(proxy)) == 1


def test_a_remote_server_dropped_unclosed_ends_its_listening_thread(
    mcp_http_server: Servers, recording_proxy: Proxy,
) -> None:
    proxy = recording_proxy(mcp_http_server("stateful").url)
    server = RemoteServer(proxy.url, timeout=10, protocol_version=WIRE).connect()
    wait_until(lambda: any(x.status == 200 for x in gets(proxy)), ARRIVAL)
    [thread] = [t for t in threading.enumerate()
                if t.name.startswith("sark-sync-mcp-") and t.name.endswith("-listener")]
    del server
    gc.collect()  # the session may hold cycles: collected, the channel ends its thread
    thread.join(ARRIVAL)
    assert not thread.is_alive()


def test_a_server_that_closes_the_stream_after_each_priming_event_is_polled_to_the_answer(
    mcp_http_server: Servers, recording_proxy: Proxy,
) -> None:
    proxy = recording_proxy(mcp_http_server("resumable").url)
    with RemoteServer(proxy.url, timeout=10, protocol_version=WIRE) as server:
        started = time.monotonic()
        assert server.call_tool("hangup", {"rounds": 4, "interval": 0.4}).text == \
            "hung up 4 times"
        assert time.monotonic() - started < 4.0
    resumed = [x.header("Last-Event-ID") for x in gets(proxy) if x.header("Last-Event-ID")]
    assert len(resumed) == 4 and len(set(resumed)) == 4  # each poll from the newest id


@pytest.mark.timeout(30)
def test_a_resumed_stream_that_stalls_is_cut_at_the_deadline_and_the_call_cancelled(
    mcp_http_server: Servers, recording_proxy: Proxy,
) -> None:
    proxy = recording_proxy(mcp_http_server("resumable").url, cut_after_events=1, only=is_call)
    with RemoteServer(proxy.url, timeout=10, protocol_version=WIRE) as server:
        started = time.monotonic()
        with pytest.raises(DeadlineExceeded, match=r"did not answer tools/call within 1s"):
            server.call_tool("slow", {"seconds": 60}, timeout=1.0, progress=lambda *a: None)
        assert time.monotonic() - started < 1.0 + 0.2
        [cut] = proxy.cuts
        [resumed] = [x for x in gets(proxy) if x.header("Last-Event-ID") is not None]
        assert resumed.header("Last-Event-ID") == cut.last_event_id and resumed.status == 200
        call = json.loads(cut.exchange.body)
        cancels = [json.loads(x.body) for x in proxy.requests
                   if x.method == "POST" and b"notifications/cancelled" in x.body]
        assert [c["params"]["requestId"] for c in cancels] == [call["id"]]


def test_calls_answered_on_a_response_stream_reuse_their_connection(
    mcp_http_server: Servers, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The stream is read past its answer to the end of the body, so its connection goes back
    # to the pool: 20 calls cost no new TCP connection each (before: one per call).
    opened: list[int] = []
    new_conn = _guarded._GuardedMixin._new_conn

    def counting(self: Any) -> Any:
        opened.append(1)
        return new_conn(self)

    monkeypatch.setattr(_guarded._GuardedMixin, "_new_conn", counting)
    with RemoteServer(mcp_http_server("stateful").url, timeout=10,
                      protocol_version=WIRE) as server:
        server.call_tool("steps", {"count": 1, "interval": 0}, progress=lambda *a: None)
        before = len(opened)
        for index in range(20):
            assert server.call_tool("steps", {"count": 1, "interval": 0},
                                    progress=lambda *a: None).is_error is False, index
        assert len(opened) - before <= 1
