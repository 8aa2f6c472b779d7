"""The event streams of Streamable HTTP over in-memory bodies, without a socket: the reading
rules (priming, retry, ids, replays) and the resumption of a response stream
(``transports/_mcp_http_stream.py``), the listening stream's reconnect rules and its owner
(``transports/_mcp_http_listen.py``)."""

from __future__ import annotations

import threading
import time
import weakref
from typing import Any

import pytest
import requests
from hypothesis import given, settings
from hypothesis import strategies as st

from sark_sync import ClientClosedError, ConnectionFailed, RetryPolicy, TransportTimeout
from sark_sync.resilience import retryable
from sark_sync.transports import _mcp_http_listen as listening
from sark_sync.transports import _mcp_http_stream as streams
from sark_sync.transports._mcp_http_listen import EventStreams, Listener
from sark_sync.transports._mcp_http_stream import StreamState, read_messages
from sark_sync.wire import jsonrpc

WHERE = {"method": "POST", "url": "http://127.0.0.1:1/mcp", "server": "s"}


def event(data: str, *, event_id: str | None = None, kind: str | None = None,
          retry: int | None = None) -> bytes:
    lines = [f"id: {event_id}"] if event_id is not None else []
    lines += [f"event: {kind}"] if kind is not None else []
    lines += [f"data: {data}"]
    lines += [f"retry: {retry}"] if retry is not None else []
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def progress(n: int) -> str:
    return ('{"jsonrpc":"2.0","method":"notifications/progress","params":'
            f'{{"progressToken":"t","progress":{n}}}}}')


def answer(request_id: int = 7) -> str:
    return f'{{"jsonrpc":"2.0","id":{request_id},"result":{{"ok":true}}}}'


class Raw:
    """urllib3's ``read1`` over chunks; ``then`` is raised once they run out (a break)."""

    def __init__(self, chunks: list[bytes], then: Exception | None = None) -> None:
        self.chunks = list(chunks)
        self.then = then

    def read1(self, size: int, decode_content: bool = True) -> bytes:
        if self.chunks:
            return self.chunks.pop(0)
        if self.then is not None:
            error, self.then = self.then, None
            raise error
        return b""


class Response:
    def __init__(self, body: bytes = b"", *, status: int = 200, then: Exception | None = None,
                 mime: str = "text/event-stream", split: int = 0) -> None:
        self.status_code = status
        self.headers = {"Content-Type": mime}
        chunks = [body[i:i + split] for i in range(0, len(body), split)] if split else [body]
        self.raw = Raw([c for c in chunks if c], then)
        self.closed = False

    def close(self) -> None:
        self.closed = True


def messages(body: bytes, state: StreamState | None = None, split: int = 0) -> list[Any]:
    return list(read_messages(Response(body, split=split).raw, state or StreamState(),
                              1 << 20, "s"))


@pytest.mark.parametrize("split", [0, 1, 3])
def test_a_priming_event_delivers_nothing_and_sets_the_id_and_the_retry(split: int) -> None:
    state = StreamState()
    body = event("", event_id="e1", retry=1500) + event(progress(1), event_id="e2") + \
        event(answer(), event_id="e3")
    got = messages(body, state, split)
    assert got == [jsonrpc.Notification("notifications/progress",
                                        {"progressToken": "t", "progress": 1}),
                   jsonrpc.Response(7, {"ok": True})]
    assert state.reader.retry_ms == 1500 and state.reader.resume == b"e3"


def test_events_of_another_type_and_malformed_messages_are_skipped() -> None:
    body = event('{"a":1}', kind="ping") + event("not json") + event(answer())
    assert messages(body) == [jsonrpc.Response(7, {"ok": True})]


def test_an_event_id_seen_already_is_dropped_and_events_without_ids_never_are() -> None:
    state = StreamState()
    body = event(progress(1), event_id="e1") + event(progress(2))
    assert len(messages(body, state)) == 2
    replay = event(progress(1), event_id="e1") + event(progress(2)) + \
        event(progress(3), event_id="e3")
    # e1 again is a replay; the block without an id inherits "e1" as its last id but is not
    # one: it is delivered.
    assert [m.params["progress"] for m in messages(replay, state)] == [2, 3]


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300), st.integers(min_value=1, max_value=17))
def test_any_bytes_give_messages_or_nothing_never_another_error(body: bytes, split: int) -> None:
    for message in messages(body, split=split):
        assert isinstance(message, (jsonrpc.Request, jsonrpc.Notification, jsonrpc.Response,
                                    jsonrpc.ErrorResponse))


class Opener:
    """``open_get`` from a list of responses (or exceptions); records the Last-Event-IDs."""

    def __init__(self, *answers: Any) -> None:
        self.answers = list(answers)
        self.asked: list[bytes | None] = []

    def __call__(self, last_event_id: bytes | None, timeout: float | None) -> Any:
        self.asked.append(last_event_id)
        item = self.answers.pop(0)
        if isinstance(item, Exception):
            raise item
        return item


def read(first: Response, opener: Opener, *, deadline: float = 10.0,
         slept: list[float] | None = None) -> tuple[Any, list[Any]]:
    dispatched: list[Any] = []
    sleeps = [] if slept is None else slept

    def sleep(seconds: float) -> bool:
        sleeps.append(seconds)
        return False  # not closed

    reader = EventStreams("s", 1 << 20, sleep=sleep)
    got = reader.answer(first, 7, "tools/call", time.monotonic() + deadline, dict(WHERE),
                        opener, dispatched.append)
    return got, dispatched


BROKEN = requests.exceptions.ChunkedEncodingError("cut")


def test_a_broken_stream_is_resumed_from_its_last_id_after_the_retry_and_delivers_each_event_once(
) -> None:
    first = Response(event("", event_id="e1", retry=250) + event(progress(1), event_id="e2")
                     + event(progress(2), event_id="e3"), then=BROKEN)
    replay = Response(event(progress(2), event_id="e3") + event(progress(3), event_id="e4")
                      + event(answer(), event_id="e5"))
    opener, slept = Opener(replay), []
    got, dispatched = read(first, opener, slept=slept)
    assert got == jsonrpc.Response(7, {"ok": True})
    assert [m.params["progress"] for m in dispatched] == [1, 2, 3]
    assert opener.asked == [b"e3"] and slept == [0.25]
    assert replay.closed and not first.closed  # the caller closes the first


def test_a_stream_that_ends_without_its_answer_and_without_ids_fails_at_once() -> None:
    opener = Opener()
    with pytest.raises(ConnectionFailed, match="ended before its answer, with no event id "
                       "to resume from") as caught:
        read(Response(event(progress(1))), opener)
    assert opener.asked == []
    assert caught.value.server == "s" and caught.value.url == WHERE["url"]
    # sent: a tool that is not safe to repeat is not retried
    assert not retryable(caught.value, idempotent=False, policy=RetryPolicy())
    assert retryable(caught.value, idempotent=True, policy=RetryPolicy())


def test_without_a_retry_the_first_resumption_is_at_once_then_backs_off() -> None:
    first = Response(event(progress(1), event_id="e1"), then=BROKEN)
    empty = [Response(b"", then=BROKEN) for _ in range(3)]
    opener, slept = Opener(*empty), []
    with pytest.raises(ConnectionFailed, match="3 resumptions in a row brought nothing new"):
        read(first, opener, slept=slept)
    assert opener.asked == [b"e1", b"e1", b"e1"]
    assert slept == [streams.RESUME_BACKOFF, streams.RESUME_BACKOFF * 2]  # first: no wait


def test_resumptions_that_bring_only_a_new_priming_event_are_a_poll_not_idle() -> None:
    first = Response(event("", event_id="p1"))
    polls = [Response(event("", event_id=f"p{n}")) for n in range(2, 7)]
    last = Response(event("", event_id="p7") + event(answer(), event_id="a"))
    opener = Opener(*polls, last)
    got, _ = read(first, opener)
    assert got == jsonrpc.Response(7, {"ok": True})
    assert opener.asked == [f"p{n}".encode() for n in range(1, 7)]


def test_a_resumption_refused_or_unreachable_ends_the_call() -> None:
    first = Response(event(progress(1), event_id="e1"), then=BROKEN)
    refused = Response(status=405, mime="application/json")
    with pytest.raises(ConnectionFailed, match="resuming it was answered 405") as caught:
        read(first, Opener(refused))
    assert refused.closed and caught.value.status_code == 405
    first = Response(event(progress(1), event_id="e1"), then=BROKEN)
    with pytest.raises(ConnectionFailed, match="resuming it failed: ConnectionError") as caught:
        read(first, Opener(requests.ConnectionError("refused")))
    # the POST was sent: a refused resumption must not make it look unsent
    assert not retryable(caught.value, idempotent=False, policy=RetryPolicy())


def test_a_retry_that_would_pass_the_deadline_is_not_waited_for() -> None:
    first = Response(event("", event_id="e1", retry=5000), then=BROKEN)
    opener, slept = Opener(), []
    with pytest.raises(TransportTimeout, match="resuming it after 5s would pass the deadline"):
        read(first, opener, deadline=1.0, slept=slept)
    assert slept == [] and opener.asked == []


def test_closing_wakes_a_resumption_waiting_for_its_delay() -> None:
    reader = EventStreams("s", 1 << 20)
    first = Response(event("", event_id="e1", retry=30000), then=BROKEN)
    threading.Timer(0.05, reader.close).start()
    started = time.monotonic()
    with pytest.raises(ClientClosedError):
        reader.answer(first, 7, "tools/call", time.monotonic() + 60, dict(WHERE), Opener(),
                      lambda m: None)
    assert time.monotonic() - started < 5


class Owner:
    """Stands for the channel: the listener holds only weak references to its methods."""

    def __init__(self, *answers: Any) -> None:
        self.opener = Opener(*answers)
        self.got: list[Any] = []
        self.done = threading.Event()

    def open_get(self, last_event_id: bytes | None, timeout: float | None) -> Any:
        if not self.opener.answers:
            self.done.set()
            return Response(status=405)
        return self.opener(last_event_id, timeout)

    def dispatch(self, message: jsonrpc.Message) -> None:
        self.got.append(message)


def listen(owner: Owner) -> Listener:
    listener = Listener("s", "sid", 1 << 20, weakref.WeakMethod(owner.open_get),
                        weakref.WeakMethod(owner.dispatch))
    listener.start()
    return listener


@pytest.fixture(autouse=True)
def fast_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(listening, "LISTEN_BACKOFF", 0.001)


@pytest.mark.parametrize("status", [405, 409, 404])
def test_a_refused_listening_stream_is_not_asked_again(status: int) -> None:
    owner = Owner(Response(status=status, mime="application/json"))
    listener = listen(owner)
    listener._thread.join(5)
    assert not listener.alive and owner.opener.asked == [None]


def test_a_dropped_listening_stream_reconnects_from_its_last_id_and_drops_replays() -> None:
    note = '{"jsonrpc":"2.0","method":"notifications/tools/list_changed"}'
    ask = '{"jsonrpc":"2.0","id":"s1","method":"ping"}'
    owner = Owner(
        Response(event(note, event_id="g1") + event(answer(), event_id="g2"), then=BROKEN),
        Response(event(note, event_id="g1") + event(ask, event_id="g3")),
    )
    listener = listen(owner)
    assert owner.done.wait(5)
    listener._thread.join(5)
    assert owner.opener.asked == [None, b"g2"]
    assert owner.got == [jsonrpc.Notification("notifications/tools/list_changed"),
                         jsonrpc.Request("s1", "ping")]  # the response is dropped


def test_failed_connections_in_a_row_end_the_listening_stream() -> None:
    errors = [requests.ConnectionError("refused")] * listening.MAX_LISTEN_FAILURES
    owner = Owner(*errors, Response(status=200))
    listener = listen(owner)
    listener._thread.join(5)
    assert not listener.alive and len(owner.opener.asked) == listening.MAX_LISTEN_FAILURES


def test_stop_ends_a_listener_waiting_to_reconnect_and_joins_it() -> None:
    owner = Owner(*[requests.ConnectionError("refused")] * 3)
    listener = Listener("s", "sid", 1 << 20, weakref.WeakMethod(owner.open_get),
                        weakref.WeakMethod(owner.dispatch))
    listening.LISTEN_BACKOFF = 30.0  # restored by monkeypatch
    listener.start()
    deadline = time.monotonic() + 5
    while len(owner.opener.asked) < 1 and time.monotonic() < deadline:
        threading.Event().wait(0.005)
    started = time.monotonic()
    listener.stop()
    assert not listener.alive and time.monotonic() - started < 1.0


def test_the_listening_stream_backs_off_while_connections_fail_or_bring_nothing(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(listening, "LISTEN_BACKOFF", 0.5)
    assert [listening.listen_delay(None, n) for n in range(4)] == [0.5, 0.5, 1.0, 2.0]
    assert listening.listen_delay(200, 0) == 0.2 and listening.listen_delay(200, 3) == 0.8
    assert listening.listen_delay(None, 60) == listening.LISTEN_BACKOFF_CAP == 30.0


class Dropper(Owner):
    """A server whose listening stream ends at once, every time: the listener would
    reconnect forever."""

    def open_get(self, last_event_id: bytes | None, timeout: float | None) -> Any:
        self.done.set()
        return Response(b"")


def test_a_listener_ends_once_its_channel_is_gone() -> None:
    owner = Dropper()
    listener = listen(owner)
    assert owner.done.wait(5)
    del owner
    listener._thread.join(5)
    assert not listener.alive


class Channel(Dropper):
    """A channel whose listening stream breaks at once, every time: its listener reconnects
    until it is stopped."""

    def open_get(self, last_event_id: bytes | None, timeout: float | None) -> Any:
        self.done.set()
        return Response(b"", then=requests.ConnectionError("cut"))


def test_one_listener_per_session_a_new_session_replaces_it_and_close_joins_it() -> None:
    channel, events = Channel(), EventStreams("s", 1 << 20)
    events.listen(channel, "one", channel.open_get, channel.dispatch)
    first = events.listener
    events.listen(channel, "one", channel.open_get, channel.dispatch)
    assert events.listener is first and first is not None  # the same session: kept
    events.listen(channel, "two", channel.open_get, channel.dispatch)
    second = events.listener
    assert second is not first and second is not None and second.session_id == "two"
    assert not first.alive  # stopped and joined
    events.close()
    assert not second.alive
    events.listen(channel, "three", channel.open_get, channel.dispatch)
    assert events.listener is second  # closed: no new stream


def test_a_channel_dropped_unclosed_ends_its_listening_thread() -> None:
    channel, events = Dropper(), EventStreams("s", 1 << 20)
    events.listen(channel, "one", channel.open_get, channel.dispatch)
    listener = events.listener
    assert listener is not None and channel.done.wait(5)
    del channel
    listener._thread.join(5)
    assert not listener.alive
