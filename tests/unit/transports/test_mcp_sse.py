"""LegacySSEChannel (MCP HTTP+SSE) without a socket: the endpoint's origin rule, the reading of
the stream's events into waiting callers, the channel as a MessageChannel, and RemoteServer's
``transport=`` option."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
from hypothesis import given, settings
from hypothesis import strategies as st

from sark_sync import (
    ClientClosedError,
    ConfigurationError,
    ConnectionFailed,
    ProtocolError,
    RPCError,
)
from sark_sync._models import Event
from sark_sync.resilience import mark_sent
from sark_sync.transports import LegacySSEChannel, MessageChannel
from sark_sync.transports._common import error_from_answer, translate
from sark_sync.transports._mcp_remote import TRANSPORTS, RemoteServer
from sark_sync.transports._mcp_sse_stream import EndpointStream, resolve_endpoint
from sark_sync.wire import jsonrpc

SSE = "http://127.0.0.1:8000/sse"


@pytest.mark.parametrize(("data", "url"), [
    ("/messages/?session_id=ab12", "http://127.0.0.1:8000/messages/?session_id=ab12"),
    ("messages/?x=1", "http://127.0.0.1:8000/messages/?x=1"),
    ("  /m  ", "http://127.0.0.1:8000/m"),
    ("http://127.0.0.1:8000/other", "http://127.0.0.1:8000/other"),
    ("HTTP://127.0.0.1:8000/p", "http://127.0.0.1:8000/p"),
])
def test_an_endpoint_on_the_streams_origin_is_resolved_against_it(data: str, url: str) -> None:
    assert resolve_endpoint(SSE, data) == url


def test_a_default_port_is_the_same_origin_written_or_not() -> None:
    assert resolve_endpoint("https://h.example/sse", "https://h.example:443/m") == \
        "https://h.example:443/m"
    assert resolve_endpoint("http://h.example:80/sse", "http://H.example/m") == \
        "http://H.example/m"


@pytest.mark.parametrize(("data", "why"), [
    ("http://127.0.0.1:8001/m", "another origin (http://127.0.0.1:8001; the stream is on "
                                "http://127.0.0.1:8000)"),
    ("http://localhost:8000/m", "another origin (http://localhost:8000;"),
    ("https://127.0.0.1:8000/m", "another origin (https://127.0.0.1:8000;"),
    ("//evil.example/m", "another origin (http://evil.example:80;"),
    ("http://127.0.0.1:80x/m", "another origin (an invalid port;"),
    ("", "the endpoint event carries no URL"),
    ("   ", "the endpoint event carries no URL"),
])
def test_an_endpoint_elsewhere_is_refused_with_the_reason(data: str, why: str) -> None:
    with pytest.raises(ValueError) as caught:
        resolve_endpoint(SSE, data)
    assert why in str(caught.value)


@pytest.mark.parametrize("data", [None, 8000, {"url": "/m"}, ["/m"]])
def test_an_endpoint_that_is_not_text_is_refused(data: object) -> None:
    with pytest.raises(ValueError, match="the endpoint event carries no URL"):
        resolve_endpoint(SSE, data)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=80))
def test_any_endpoint_text_resolves_on_the_origin_or_raises_value_error(data: str) -> None:
    try:
        url = resolve_endpoint(SSE, data)
    except ValueError:
        return
    parts = urlsplit(url)
    assert (parts.scheme.lower(), parts.hostname, parts.port or 80) == ("http", "127.0.0.1", 8000)


# -- the stream's events, fed by hand ----------------------------------------------------------

class Fed:
    """An EndpointStream that never connects: events are fed to it directly."""

    def __init__(self) -> None:
        self.unasked: list[Any] = []
        self.session = requests.Session()
        self.stream = EndpointStream(SSE, name="s", session=self.session, headers={},
                                     auth=None, max_event_bytes=1024,
                                     dispatch=self.unasked.append)

    def feed(self, kind: str, data: Any) -> None:
        self.stream._on_event(Event(id=None, type=kind, data=data))


@pytest.fixture
def fed() -> Any:
    made = Fed()
    yield made
    made.session.close()


def test_the_first_endpoint_is_taken_with_its_session_id_and_later_ones_ignored(
        fed: Fed) -> None:
    fed.feed("endpoint", "/messages/?session_id=abc")
    fed.feed("endpoint", "/elsewhere/?session_id=zzz")
    assert fed.stream.endpoint == "http://127.0.0.1:8000/messages/?session_id=abc"
    assert fed.stream.session_id == "abc" and fed.stream.ready.is_set()


def test_an_endpoint_refused_ends_the_reading_with_a_protocol_error(fed: Fed) -> None:
    with pytest.raises(ProtocolError, match="'s' sent an endpoint event that was refused"):
        fed.feed("endpoint", "http://127.0.0.1:9/m")
    assert fed.stream.endpoint is None


def test_answers_settle_their_waiters_by_id_and_strays_are_dropped(fed: Fed) -> None:
    first, second = fed.stream.expect(1), fed.stream.expect("two")
    fed.feed("message", {"jsonrpc": "2.0", "id": 7, "result": "stray"})
    fed.feed("message", {"jsonrpc": "2.0", "id": "two", "error": {"code": -1, "message": "no"}})
    fed.feed("message", {"jsonrpc": "2.0", "id": 1, "result": {"ok": True}})
    fed.feed("message", {"jsonrpc": "2.0", "id": 1, "result": "late duplicate"})
    assert first.done and first.result == {"ok": True} and first.error is None
    assert isinstance(second.error, RPCError) and second.error.code == -1


def test_a_malformed_answer_fails_the_request_it_names(fed: Fed) -> None:
    waiter = fed.stream.expect(3)
    fed.feed("message", '{"jsonrpc": "2.0", "id": 3, "result": }')
    assert isinstance(waiter.error, ProtocolError)
    assert "unreadable answer from 's'" in str(waiter.error)


def test_the_servers_requests_and_notifications_go_to_dispatch(fed: Fed) -> None:
    fed.feed("message", {"jsonrpc": "2.0", "id": "s1", "method": "ping"})
    fed.feed("message", {"jsonrpc": "2.0", "method": "notifications/progress",
                         "params": {"progressToken": "t", "progress": 1}})
    fed.feed("ping", "ignored: not a message event")
    assert fed.unasked == [
        jsonrpc.Request(id="s1", method="ping"),
        jsonrpc.Notification(method="notifications/progress",
                             params={"progressToken": "t", "progress": 1})]


def test_the_end_fails_every_waiter_and_every_later_request(fed: Fed) -> None:
    waiters = [fed.stream.expect(n) for n in range(3)]
    fed.stream.fail_all(mark_sent(ConnectionFailed("gone", server="s")))
    assert all(isinstance(w.error, ConnectionFailed) for w in waiters)
    assert len({id(w.error) for w in waiters}) == 3  # one instance per raiser
    with pytest.raises(ConnectionFailed, match="gone"):
        fed.stream.expect(9)
    fed.stream.fail_all(ClientClosedError("closed"))  # the first reason stays
    assert isinstance(fed.stream.failure, ConnectionFailed)


# -- the channel and the option ----------------------------------------------------------------

def test_the_channel_is_a_message_channel_that_has_not_connected() -> None:
    channel = LegacySSEChannel(SSE, name="s", user_agent="t")
    try:
        assert isinstance(channel, MessageChannel)
        assert channel.alive and channel.endpoint is None and channel.session_id is None
        assert repr(channel) == f"<LegacySSEChannel 's' {SSE} not started>"
    finally:
        channel.close()
    assert not channel.alive and repr(channel) == f"<LegacySSEChannel 's' {SSE} closed>"
    with pytest.raises(ClientClosedError, match="the session with 's' is closed"):
        channel.request("ping", None, 1.0)


def test_transport_is_one_of_three() -> None:
    assert TRANSPORTS == ("auto", "streamable-http", "sse")
    with pytest.raises(ConfigurationError,
                       match="transport must be one of auto, streamable-http, sse, not 'ws'"):
        RemoteServer(SSE, transport="ws")
    with pytest.raises(ConfigurationError,
                       match=r"protocol_version 2026-07-28 has no HTTP\+SSE transport"):
        RemoteServer(SSE, transport="sse", protocol_version="2026-07-28")
    server = RemoteServer(SSE, transport="sse", protocol_version="2024-11-05")
    try:
        assert server.transport == "sse" and server.session_id is None
    finally:
        server.close()


# -- attacks: whatever the stream sends, only our errors come out -------------------------------

class _Raw:
    """What the reader reads: the chunks given, then EOF."""

    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = list(chunks)

    def read1(self, size: int, decode_content: bool = True) -> bytes:
        return self.chunks.pop(0) if self.chunks else b""


class _Response:
    def __init__(self, chunks: list[bytes]) -> None:
        self.raw = _Raw(chunks)
        self.closed = False

    def close(self) -> None:
        self.closed = True


JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=8),
                    lambda inner: st.lists(inner, max_size=3)
                    | st.dictionaries(st.sampled_from(["jsonrpc", "id", "method", "result",
                                                       "error", "params", "code"]), inner,
                                      max_size=4), max_leaves=12)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=40) | st.sampled_from(
    [b"event: endpoint\ndata: /m\n\n", b"event: endpoint\ndata: http://x:1/\n\n",
     b'data: {"jsonrpc":"2.0","id":1,"result":7}\n\n', b"\r\n", b"data: [[[\n\n"]), max_size=12))
def test_any_bytes_on_the_stream_end_it_with_one_of_our_errors(chunks: list[bytes]) -> None:
    fed = Fed()
    try:
        waiter = fed.stream.expect(1)
        response = _Response(chunks)
        fed.stream._read(response)  # type: ignore[arg-type]
        assert response.closed and waiter.done and fed.stream.ready.is_set()
        assert isinstance(fed.stream.failure, (ConnectionFailed, ProtocolError))
        assert waiter.error is None or isinstance(waiter.error, (ConnectionFailed, ProtocolError,
                                                                 RPCError))
        assert all(isinstance(m, (jsonrpc.Request, jsonrpc.Notification)) for m in fed.unasked)
    finally:
        fed.session.close()


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(["endpoint", "message", "other"]), JSON | st.text(max_size=40))
def test_any_event_is_taken_or_refused_with_a_protocol_error(kind: str, data: Any) -> None:
    fed = Fed()
    try:
        fed.feed(kind, data)
    except ProtocolError:
        assert kind == "endpoint"
    finally:
        fed.session.close()


def test_an_mcp_url_with_credentials_points_at_headers_or_auth_not_api_key() -> None:
    with pytest.raises(ConfigurationError) as caught:
        RemoteServer("http://ada:s3cret-pw@127.0.0.1:8000/mcp")
    assert caught.value.message == ("MCP server URL must not carry credentials "
                                    "(user:password@); use headers= or auth=")
    assert "s3cret-pw" not in repr(caught.value)


def test_a_failure_to_reach_an_mcp_server_names_the_server_not_the_gateway() -> None:
    exc = requests.ConnectionError("refused")
    assert translate(exc, peer="MCP server 'sdk'").message == \
        "could not reach MCP server 'sdk': ConnectionError: refused"
    assert translate(requests.ReadTimeout("slow"), peer="MCP server 'sdk'").message == \
        "timed out waiting for the response of MCP server 'sdk'"
    assert translate(requests.ReadTimeout("slow")).message == \
        "timed out waiting for the gateway's response"
    assert error_from_answer(405, b"", {}, {}, peer="MCP server 'sdk'").message == \
        "MCP server 'sdk' answered 405"
