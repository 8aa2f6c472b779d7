"""LocalGateway event streams (``GET /api/v1/events``) over real loopback sockets:
headers, ``retry``, ids, replay after ``Last-Event-ID``, ``stream_reset``, type filtering, pings,
both framings, stream faults, stop and disconnect, concurrency.

The stream is read by :class:`EventReader`, a raw socket client that de-chunks and parses SSE
itself, so these tests pin the wire format independently of sark_sync's client. Events come
from :meth:`LocalGateway.publish_event`; those of real activity are in
``test_local_gateway_events_sources.py``.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Callable

import pytest
import requests
from local_gateway_helpers import AUTH, SSE, EventReader, error_of, gateway_threads
from support import WAIT, build_gateway, wait_for

from sark_sync.testing import Fault, LocalGateway

#: How fast a published event must reach an open stream (no buffering anywhere).
DELIVERY = 0.2


@pytest.fixture
def gateway(make_gateway: Callable[..., LocalGateway]) -> LocalGateway:
    """A gateway without servers: no ``server_registered`` events, ids start at 1."""
    return make_gateway("empty")


def publish(gateway: LocalGateway, count: int, type: str = "custom", start: int = 0) -> list[int]:
    return [gateway.publish_event(type, {"n": n}) for n in range(start, start + count)]


def ids(events: list[SSE]) -> list[int | None]:
    return [event.id for event in events]


# -- the response ----------------------------------------------------------------------------


@pytest.mark.parametrize("key", [None, "wrong-key"])
def test_a_stream_needs_a_valid_api_key(
    gateway: LocalGateway, http: requests.Session, key: str | None
) -> None:
    headers = {"X-API-Key": key} if key else {}
    error_of(http.get(f"{gateway.url}/api/v1/events", headers=headers), 401, "unauthenticated")
    with EventReader(gateway.url, key=key) as reader:
        assert reader.status == 401
        assert reader.headers["content-type"] == "application/json"


def test_a_stream_is_200_event_stream_no_cache_chunked_and_starts_with_retry(
    gateway: LocalGateway,
) -> None:
    with EventReader(gateway.url) as reader:
        assert reader.status == 200
        assert reader.headers["content-type"] == "text/event-stream"
        assert reader.headers["cache-control"] == "no-cache"
        assert reader.headers["transfer-encoding"] == "chunked"
        assert "content-length" not in reader.headers
        assert reader.headers["x-request-id"]
        gateway.publish_event("custom", {"n": 1})
        assert reader.next() == SSE(1, "custom", '{"n":1}')
        assert reader.retry == [1000]
        assert reader.chunks[0] == b"retry: 1000\nid: 0\n\n"


def test_retry_is_configurable_in_seconds_and_sent_in_milliseconds() -> None:
    with build_gateway("empty", event_retry=0.25) as gateway, EventReader(gateway.url) as reader:
        gateway.publish_event("custom", {})
        reader.take(1)
        assert reader.chunks[0] == b"retry: 250\nid: 0\n\n"


def test_each_event_is_one_chunk_with_its_id_type_and_one_line_of_json(
    gateway: LocalGateway
) -> None:
    data = {"text": "two\nlines\r\nand a\u2028separator", "é": [1, None, True]}
    with EventReader(gateway.url) as reader:
        event_id = gateway.publish_event("custom_event", data)
        event = reader.next()
        assert event is not None and event.json() == data
        assert reader.chunks[-1] == (
            f"id: {event_id}\nevent: custom_event\ndata: "
            f"{json.dumps(data, separators=(',', ':'), ensure_ascii=False)}\n\n"
        ).encode()
        assert b"\r" not in reader.chunks[-1] and reader.chunks[-1].count(b"\n") == 4


def test_a_stream_request_is_recorded_like_any_other(gateway: LocalGateway) -> None:
    with EventReader(gateway.url, last_event_id=0, types="custom") as reader:
        assert reader.status == 200
    recorded = gateway.requests[-1]
    assert (recorded.method, recorded.path, recorded.query) == (
        "GET", "/api/v1/events", {"types": "custom"})
    assert recorded.headers["Last-Event-ID"] == "0"


def test_head_answers_the_stream_headers_without_a_body(gateway: LocalGateway) -> None:
    with EventReader(gateway.url, method="HEAD") as reader:
        assert reader.status == 200
        assert reader.headers["content-type"] == "text/event-stream"
        assert reader.rest() == [] and reader.chunks == []


# -- ids and replay --------------------------------------------------------------------------


def test_ids_increase_strictly_from_first_event_id() -> None:
    with build_gateway("empty", first_event_id=500) as gateway:
        assert gateway.last_event_id == 499
        assert publish(gateway, 3) == [500, 501, 502]
        assert gateway.last_event_id == 502
        with EventReader(gateway.url, last_event_id=499) as reader:
            assert ids(reader.take(3)) == [500, 501, 502]


def test_without_last_event_id_only_events_published_after_connecting_come(
    gateway: LocalGateway,
) -> None:
    publish(gateway, 3)
    with EventReader(gateway.url) as reader:
        assert reader.quiet(0.1) and not reader.eof  # no replay of the buffer
        publish(gateway, 2, start=3)
        events = reader.take(2)
        assert ids(events) == [4, 5] and [e.json()["n"] for e in events] == [3, 4]


def test_last_event_id_zero_replays_the_whole_buffer_then_live_events_follow(
    gateway: LocalGateway,
) -> None:
    publish(gateway, 3)
    with EventReader(gateway.url, last_event_id=0) as reader:
        assert [e.json()["n"] for e in reader.take(3)] == [0, 1, 2]
        publish(gateway, 2, start=3)
        assert ids(reader.take(2)) == [4, 5]


def test_last_event_id_replays_only_later_events(gateway: LocalGateway) -> None:
    publish(gateway, 10)
    with EventReader(gateway.url, last_event_id=7) as reader:
        assert ids(reader.take(3)) == [8, 9, 10]
        assert reader.quiet(0.1)


def test_last_event_id_of_the_newest_event_replays_nothing_and_streams_what_follows(
    gateway: LocalGateway,
) -> None:
    publish(gateway, 4)
    with EventReader(gateway.url, last_event_id=4) as reader:
        assert reader.quiet(0.1)
        publish(gateway, 1)
        assert ids(reader.take(1)) == [5]


def test_an_id_that_fell_out_of_the_buffer_gets_stream_reset_then_the_whole_buffer(
    gateway: LocalGateway,
) -> None:
    publish(gateway, 10_050)  # the buffer keeps the last 10,000: ids 51..10050
    with EventReader(gateway.url, last_event_id=10) as reader:
        reset, *replayed = reader.take(10_001)
    assert reset == SSE(None, "stream_reset", reset.data)
    assert reset.json() == {"last_event_id": 10, "oldest_available": 51, "reason": "expired"}
    assert ids(replayed) == list(range(51, 10_051))
    with EventReader(gateway.url, last_event_id=50) as reader:  # nothing lost after 50
        assert ids(reader.take(1)) == [51]


@pytest.mark.parametrize(("published", "oldest"), [(3, 1), (0, None)])
def test_an_id_from_the_future_gets_stream_reset_then_the_whole_buffer(
    gateway: LocalGateway, published: int, oldest: int | None
) -> None:
    publish(gateway, published)
    with EventReader(gateway.url, last_event_id=99) as reader:
        reset = reader.take(1)[0]
        assert (reset.id, reset.event) == (None, "stream_reset")
        assert reset.json() == {"last_event_id": 99, "oldest_available": oldest,
                                "reason": "future"}
        assert ids(reader.take(published)) == list(range(1, published + 1))


@pytest.mark.parametrize("value", ["abc", "-1", "1.5", "0x10", "9" * 31])
def test_a_malformed_last_event_id_gets_stream_reset_then_the_whole_buffer(
    gateway: LocalGateway, value: str
) -> None:
    publish(gateway, 2)
    with EventReader(gateway.url, last_event_id=value) as reader:
        reset, *replayed = reader.take(3)
    assert reset.json() == {"last_event_id": None, "oldest_available": 1, "reason": "malformed"}
    assert ids(replayed) == [1, 2]


def test_an_empty_last_event_id_is_absent(gateway: LocalGateway) -> None:
    publish(gateway, 1)
    with EventReader(gateway.url, last_event_id="") as reader:
        assert reader.opening() == b"retry: 1000\nid: 1\n\n"  # no reset: as if absent
        assert reader.quiet(0.1) and not reader.eof
        publish(gateway, 1)
        assert [(e.id, e.event) for e in reader.take(1)] == [(2, "custom")]


def test_a_restarted_gateway_binds_the_same_port_and_continues_ids_for_its_clients() -> None:
    with build_gateway("empty") as first:
        publish(first, 5)
        port = int(first.url.rsplit(":", 1)[1])
        # Open at stop(): its connection ends in TIME_WAIT.
        reader = EventReader(first.url, last_event_id=0)
        reader.take(5)
    reader.close()
    with build_gateway("empty", port=port, first_event_id=6) as second:
        assert second.url == first.url
        publish(second, 2, start=5)
        with EventReader(second.url, last_event_id=5) as resumed:
            assert ids(resumed.take(2)) == [6, 7]
        with EventReader(second.url, last_event_id=3) as behind:
            assert behind.take(1)[0].json() == {
                "last_event_id": 3, "oldest_available": 6, "reason": "expired"}


# -- where a stream starts: the opening block ------------------------------------------------


def test_a_fresh_stream_gets_no_old_event_but_every_new_one(gateway: LocalGateway) -> None:
    publish(gateway, 5)
    with EventReader(gateway.url) as reader:
        assert reader.opening() == b"retry: 1000\nid: 5\n\n"  # subscribed from here on
        publish(gateway, 3, type="fresh")
        events = reader.take(3)
        assert [(e.id, e.event) for e in events] == [(6, "fresh"), (7, "fresh"), (8, "fresh")]
        assert reader.quiet(0.1) and not reader.eof
        assert reader.last_id == "8"


@pytest.mark.parametrize("framing", ["chunked", "close"])
@pytest.mark.parametrize(
    ("last_event_id", "position"),
    [(None, 3), ("", 3), (0, 0), (2, 2), (3, 3)],
)
def test_the_opening_block_is_retry_and_the_id_after_which_events_are_due(
    framing: str, last_event_id: int | str | None, position: int
) -> None:
    with build_gateway("empty", event_framing=framing) as gateway:
        publish(gateway, 3)
        with EventReader(gateway.url, last_event_id=last_event_id) as reader:
            assert reader.opening() == b"retry: 1000\nid: %d\n\n" % position
            assert reader.chunks[:1] == ([b"retry: 1000\nid: %d\n\n" % position]
                                         if framing == "chunked" else [])
            assert reader.last_id == str(position)
            assert ids(reader.take(3 - position)) == list(range(position + 1, 4))
            publish(gateway, 1)
            assert ids(reader.take(1)) == [4]


def test_a_fresh_stream_of_a_gateway_continuing_ids_opens_at_the_id_before_its_first() -> None:
    with build_gateway("empty", first_event_id=500) as gateway, EventReader(gateway.url) as reader:
        assert reader.opening() == b"retry: 1000\nid: 499\n\n"
        publish(gateway, 1)
        assert ids(reader.take(1)) == [500]


@pytest.mark.parametrize(
    ("last_event_id", "reason"), [(99, "future"), ("abc", "malformed"), (2, "expired")]
)
def test_the_opening_block_has_no_id_when_a_stream_reset_follows(
    last_event_id: int | str, reason: str
) -> None:
    # ids 10..12: 99 is ahead, 2 fell out
    with build_gateway("empty", first_event_id=10) as gateway:
        publish(gateway, 3)
        with EventReader(gateway.url, last_event_id=last_event_id) as reader:
            assert reader.opening() == b"retry: 1000\n\n"
            reset = reader.take(1)[0]
            assert (reset.id, reset.event, reset.json()["reason"]) == (
                None, "stream_reset", reason)
            # Until a real event arrives, a reconnecting client asks for the same thing again.
            assert reader.last_id == str(last_event_id)
            assert ids(reader.take(3)) == [10, 11, 12]
            assert reader.last_id == "12"


@pytest.mark.parametrize("ending", ["drop_after_events", "client_closes"])
def test_a_stream_lost_before_its_first_event_resumes_from_its_opening_id_losing_nothing(
    gateway: LocalGateway, ending: str
) -> None:
    publish(gateway, 3)
    if ending == "drop_after_events":
        gateway.add_fault(Fault(path="/api/v1/events", drop_after_events=0))
    with EventReader(gateway.url) as first:
        assert first.opening() == b"retry: 1000\nid: 3\n\n"
        if ending == "drop_after_events":
            assert first.rest() == [] and first.eof and not first.last_chunk
    position = first.last_id
    assert position == "3"
    publish(gateway, 2, start=3)  # while the client is away
    with EventReader(gateway.url, last_event_id=position) as resumed:
        events = resumed.take(2)
        assert ids(events) == [4, 5] and [e.json()["n"] for e in events] == [3, 4]
        assert resumed.quiet(0.1) and not resumed.eof  # nothing older, nothing twice
    with EventReader(gateway.url) as fresh:  # what reconnecting without the id would have lost
        assert fresh.opening() == b"retry: 1000\nid: 5\n\n"
        assert fresh.quiet(0.1)


# -- filtering and keep-alive ----------------------------------------------------------------


def test_types_filter_events_on_the_server_but_stream_reset_is_always_sent(
    gateway: LocalGateway,
) -> None:
    for type in ("alpha", "beta", "gamma", "beta", "alpha"):
        gateway.publish_event(type, {})
    with EventReader(gateway.url, types="alpha,gamma", last_event_id=1000) as reader:
        events = reader.take(4)
        assert [(e.id, e.event) for e in events] == [
            (None, "stream_reset"), (1, "alpha"), (3, "gamma"), (5, "alpha")]
        gateway.publish_event("beta", {})
        gateway.publish_event("gamma", {})
        assert [(e.id, e.event) for e in reader.take(1)] == [(7, "gamma")]


@pytest.mark.parametrize(
    "types", ["", "A", "alpha,,beta", "alpha,", "tool-invoked", "a" * 65, "alpha,Beta", "é"]
)
def test_bad_types_are_400_invalid_request(
    gateway: LocalGateway, http: requests.Session, types: str
) -> None:
    response = http.get(f"{gateway.url}/api/v1/events", params={"types": types}, headers=AUTH)
    assert "types" in error_of(response, 400, "invalid_request")["message"]


def test_an_idle_stream_gets_a_ping_every_ping_interval() -> None:
    with build_gateway("empty", ping_interval=0.1) as gateway, EventReader(gateway.url) as reader:
        opened = time.monotonic()
        assert reader.quiet(0.55)
        assert 4 <= len(reader.pings) <= 6
        gaps = [b - a for a, b in zip([opened, *reader.pings], reader.pings)]
        assert all(0.07 <= gap <= 0.3 for gap in gaps), gaps
        assert reader.chunks[1:] == [b": ping\n\n"] * len(reader.pings)


# -- framing and delivery --------------------------------------------------------------------


@pytest.mark.parametrize("framing", ["chunked", "close"])
def test_an_event_published_mid_stream_arrives_within_200ms(framing: str) -> None:
    with build_gateway("empty", event_framing=framing) as gateway, \
            EventReader(gateway.url) as reader:
        if framing == "close":
            assert reader.headers["connection"] == "close"
            assert "transfer-encoding" not in reader.headers
            assert "content-length" not in reader.headers
        for n in range(5):
            assert reader.quiet(0.02)
            published = time.monotonic()
            gateway.publish_event("custom", {"n": n})
            event = reader.next(DELIVERY)
            assert event is not None and event.json() == {"n": n}
            assert time.monotonic() - published < DELIVERY


def test_an_http_1_0_client_gets_the_close_framing(gateway: LocalGateway) -> None:
    publish(gateway, 2)
    with EventReader(gateway.url, version="HTTP/1.0", last_event_id=0) as reader:
        assert "transfer-encoding" not in reader.headers
        assert ids(reader.take(2)) == [1, 2]


@pytest.mark.parametrize("framing", ["chunked", "close"])
def test_stop_ends_every_open_stream_promptly_and_frees_its_thread(framing: str) -> None:
    gateway = build_gateway("empty", event_framing=framing, ping_interval=60).start()
    readers = [EventReader(gateway.url) for _ in range(3)]
    try:
        publish(gateway, 1)
        for reader in readers:
            reader.take(1)
        assert gateway.open_connections == 3
        began = time.monotonic()
        gateway.stop()
        assert time.monotonic() - began < 2.0
        for reader in readers:
            assert reader.rest(2.0) == [] and reader.eof
        assert gateway_threads() == []
    finally:
        gateway.stop()
        for reader in readers:
            reader.close()


def test_a_client_that_disconnects_frees_its_stream_thread() -> None:
    with build_gateway("empty", ping_interval=60) as gateway:
        reader = EventReader(gateway.url)
        reader.take(0)
        wait_for(lambda: gateway.open_connections == 1)
        threads = len(gateway_threads())
        reader.close()
        began = time.monotonic()
        wait_for(lambda: gateway.open_connections == 0)
        assert time.monotonic() - began < 2.0
        assert len(gateway_threads()) == threads - 1


def test_ten_concurrent_streams_each_get_every_event(gateway: LocalGateway) -> None:
    readers = [EventReader(gateway.url) for _ in range(10)]
    try:
        publish(gateway, 100)
        for reader in readers:
            assert ids(reader.take(100)) == list(range(1, 101))
        publish(gateway, 1)
        for reader in readers:
            assert ids(reader.take(1)) == [101]
    finally:
        for reader in readers:
            reader.close()


def test_5000_events_from_four_threads_arrive_complete_in_order_without_duplicates(
    gateway: LocalGateway,
) -> None:
    per_thread, go = 1250, threading.Event()

    def produce(name: str) -> None:
        go.wait(WAIT)
        for seq in range(per_thread):
            gateway.publish_event("load", {"producer": name, "seq": seq})

    with EventReader(gateway.url) as reader:
        producers = [threading.Thread(target=produce, args=(f"p{i}",)) for i in range(4)]
        for producer in producers:
            producer.start()
        go.set()
        events = reader.take(4 * per_thread, timeout=30)
        for producer in producers:
            producer.join(WAIT)
        assert reader.quiet(0.05)
    assert ids(events) == list(range(1, 5001))
    for name in ("p0", "p1", "p2", "p3"):
        seqs = [e.json()["seq"] for e in events if e.json()["producer"] == name]
        assert seqs == list(range(per_thread))


def test_a_reader_that_falls_a_buffer_behind_gets_stream_reset_lagged() -> None:
    # The stream's writer runs ahead of a reader that does not read only as far as the socket
    # buffers allow (a few MiB, far less than 25,000 events of 1 KiB), and the publisher
    # outruns the writer: events after the writer's position are overwritten meanwhile.
    with build_gateway("empty") as gateway, EventReader(gateway.url) as reader:
        padding = "x" * 1024
        for n in range(25_000):
            gateway.publish_event("big", {"n": n, "padding": padding})
        events = [reader.take(1, timeout=30)[0]]
        while events[-1].id != 25_000:
            events.append(reader.take(1, timeout=30)[0])
        assert reader.quiet(0.05)
    resets = [i for i, event in enumerate(events) if event.event == "stream_reset"]
    assert resets and events[0].id == 1
    for i in resets:  # each says where this stream was and where it goes on from
        reset, before, after = events[i].json(), events[i - 1], events[i + 1]
        assert events[i].id is None and reset["reason"] == "lagged"
        assert reset["last_event_id"] == before.id
        assert reset["oldest_available"] == after.id > before.id + 1
    runs = [e.id for e in events if e.id is not None]
    gaps = [(a, b) for a, b in zip(runs, runs[1:]) if b != a + 1]
    assert len(gaps) == len(resets)  # ids are consecutive except where a reset says why
    # The buffer holds 10,000 events: where the last reset resumes can never be past the
    # oldest event left at the end (15,001); how far before depends on how far the publisher
    # had got when the reader lagged.
    assert events[resets[-1] + 1].id <= 25_000 - 10_000 + 1


# -- faults ----------------------------------------------------------------------------------


def test_drop_after_events_closes_every_stream_abruptly_after_that_many_events(
    gateway: LocalGateway,
) -> None:
    fault = gateway.add_fault(Fault(path="/api/v1/events", drop_after_events=3, times=None))
    publish(gateway, 5)
    with EventReader(gateway.url, last_event_id=0) as reader:
        assert ids(reader.rest()) == [1, 2, 3]
        assert reader.eof and not reader.last_chunk
    with EventReader(gateway.url, last_event_id=3) as resumed:
        assert ids(resumed.take(2)) == [4, 5]
        assert resumed.quiet(0.1) and not resumed.eof  # two events so far: still open
        publish(gateway, 2)
        assert ids(resumed.rest()) == [6]
        assert resumed.eof and not resumed.last_chunk
    assert fault.hits == 2


def test_drop_after_zero_events_closes_right_after_retry(gateway: LocalGateway) -> None:
    gateway.add_fault(Fault(path="/api/v1/events", drop_after_events=0))
    publish(gateway, 2)
    with EventReader(gateway.url, last_event_id=0) as reader:  # two events due, none sent
        assert reader.rest() == [] and reader.retry == [1000] and not reader.last_chunk
    with EventReader(gateway.url, last_event_id=0) as reader:  # the fault applied once
        assert ids(reader.take(2)) == [1, 2]


def test_drop_counts_only_events_the_stream_sent(gateway: LocalGateway) -> None:
    gateway.add_fault(Fault(path="/api/v1/events", drop_after_events=2))
    gateway.publish_event("alpha", {})
    gateway.publish_event("beta", {})
    with EventReader(gateway.url, types="beta", last_event_id=77) as reader:
        gateway.publish_event("beta", {})
        gateway.publish_event("beta", {})
        assert [(e.id, e.event) for e in reader.rest()] == [
            (None, "stream_reset"), (2, "beta"), (3, "beta")]


def test_stall_sends_nothing_not_even_pings_for_stall_seconds_then_closes() -> None:
    with build_gateway("empty", ping_interval=0.05) as gateway:
        gateway.add_fault(Fault(path="/api/v1/events", stall_after_events=2, stall=0.6))
        publish(gateway, 4)
        with EventReader(gateway.url, last_event_id=0) as reader:
            began = time.monotonic()
            assert ids(reader.take(2)) == [1, 2]
            assert reader.rest(WAIT) == []
            assert 0.5 <= time.monotonic() - began < 2.0
            assert reader.pings == [] and reader.eof and not reader.last_chunk


def test_a_stall_without_end_lasts_until_stop() -> None:
    gateway = build_gateway("empty", ping_interval=0.05).start()
    try:
        gateway.add_fault(Fault(path="/api/v1/events", stall_after_events=0))
        with EventReader(gateway.url) as reader:
            publish(gateway, 1)
            assert reader.quiet(0.3) and not reader.eof
            began = time.monotonic()
            gateway.stop()
            assert reader.rest(2.0) == [] and time.monotonic() - began < 2.0
    finally:
        gateway.stop()


def test_a_503_fault_with_retry_after_turns_a_stream_away_once(
    gateway: LocalGateway, http: requests.Session
) -> None:
    gateway.add_fault(Fault(path="/api/v1/events", status=503, retry_after=2))
    response = http.get(f"{gateway.url}/api/v1/events", headers=AUTH)
    error_of(response, 503, "unavailable")
    assert response.headers["Retry-After"] == "2"
    publish(gateway, 1)
    with EventReader(gateway.url, last_event_id=0) as reader:
        assert ids(reader.take(1)) == [1]


def test_a_401_fault_and_a_delay_apply_to_streams_too(gateway: LocalGateway) -> None:
    gateway.add_fault(Fault(path="/api/v1/events", status=401))
    gateway.add_fault(Fault(path="/api/v1/events", delay=0.3))
    with EventReader(gateway.url) as reader:
        assert reader.status == 401
    began = time.monotonic()
    with EventReader(gateway.url) as reader:
        assert reader.status == 200 and time.monotonic() - began >= 0.3


def test_a_content_type_fault_changes_the_stream_content_type(gateway: LocalGateway) -> None:
    gateway.add_fault(Fault(path="/api/v1/events", content_type="application/json"))
    with EventReader(gateway.url) as reader:
        assert reader.headers["content-type"] == "application/json"
