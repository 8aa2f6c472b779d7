"""The HTTP harness works: the official MCP SDK server over Streamable HTTP and the legacy
HTTP+SSE (tests/realcomp/mcp_http_server.py, tools venv), reached through the recording proxy
(tests/realcomp/recording_proxy.py), spoken to with plain ``requests``.

The exchanges are written out here on purpose (no sark_sync client yet): these tests pin what
the SDK really sends over HTTP (status, Content-Type, ``Mcp-Session-Id``, the ``endpoint``
event), as listed in the docstring of mcp_http_server.py, so that the client can be tested
against those facts, and they prove that the proxy relays and records every exchange without
buffering a stream. Every read is bounded by the socket timeout; nothing sleeps.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any, Callable

import pytest
import requests
from realcomp.fixtures import McpHttpServer
from realcomp.recording_proxy import RecordingProxy

pytestmark = [pytest.mark.realcomp, pytest.mark.timeout(30)]

#: Bounds of one HTTP exchange with the local server (connect, then each read).
TIMEOUT = (5.0, 15.0)
#: What a Streamable HTTP client must accept (the SDK answers 406 otherwise).
ACCEPT = "application/json, text/event-stream"
HANDSHAKE_VERSION = "2025-11-25"
MODERN_VERSION = "2026-07-28"
CLIENT_INFO = {"name": "sark-sync-tests", "version": "0"}
STREAMABLE_MODES = ["stateful", "stateful-json", "stateless", "stateless-json"]
#: The Content-Type of a POST's answer in each mode.
ANSWER_TYPE = {"stateful": "text/event-stream", "stateful-json": "application/json",
               "stateless": "text/event-stream", "stateless-json": "application/json"}
#: Seconds the ``slow`` tool sleeps in the streaming test: far longer than an event takes to
#: cross the proxy, so an event that arrives before it proves the proxy did not buffer.
SLOW_SECONDS = 20.0

Message = dict[str, Any]


class Sse:
    """The events of one streamed response, read as they arrive (``(event, data)`` pairs)."""

    def __init__(self, response: requests.Response) -> None:
        self._chunks: Iterator[bytes] = response.iter_content(chunk_size=None)
        self._buffer = b""

    def next_event(self) -> tuple[str, str]:
        """The next event that has data (comments and bare pings skipped)."""
        while True:
            while b"\n\n" not in self._buffer:
                chunk = next(self._chunks)  # StopIteration: the stream ended
                self._buffer = (self._buffer + chunk).replace(b"\r\n", b"\n")
            block, self._buffer = self._buffer.split(b"\n\n", 1)
            event, data = "message", []
            for line in block.decode().split("\n"):
                field, _, value = line.partition(":")
                value = value[1:] if value.startswith(" ") else value
                if field == "event":
                    event = value
                elif field == "data":
                    data.append(value)
            if data:
                return event, "\n".join(data)

    def next_message(self) -> Message:
        """The next JSON-RPC message on the stream."""
        event, data = self.next_event()
        assert event == "message", (event, data)
        message: Message = json.loads(data)
        return message


def request(method: str, id_: int, **params: Any) -> Message:
    return {"jsonrpc": "2.0", "id": id_, "method": method, "params": params}


def initialize_request(id_: int = 1) -> Message:
    return request("initialize", id_, protocolVersion=HANDSHAKE_VERSION, capabilities={},
                   clientInfo=CLIENT_INFO)


def post(http: requests.Session, url: str, message: Message, session_id: str | None = None,
         version: str | None = None, **headers: str) -> requests.Response:
    """POST one JSON-RPC message as a Streamable HTTP client does; the response streamed."""
    sent = {"Accept": ACCEPT, "Content-Type": "application/json", **headers}
    if session_id is not None:
        sent["Mcp-Session-Id"] = session_id
    if version is not None:
        sent["MCP-Protocol-Version"] = version
    return http.post(url, data=json.dumps(message).encode(), headers=sent, stream=True,
                     timeout=TIMEOUT)


def answer(response: requests.Response) -> Message:
    """The JSON-RPC response in a POST's answer (JSON or SSE), the response closed."""
    with response:
        assert response.status_code == 200, response.text
        if response.headers["Content-Type"].startswith("application/json"):
            message: Message = response.json()
            return message
        stream = Sse(response)
        while True:
            message = stream.next_message()
            if "id" in message:
                return message


def open_session(http: requests.Session, url: str) -> str | None:
    """initialize + notifications/initialized; the session id (None when stateless)."""
    response = post(http, url, initialize_request())
    session_id = response.headers.get("Mcp-Session-Id")
    assert answer(response)["result"]["protocolVersion"] == HANDSHAKE_VERSION
    notified = post(http, url, {"jsonrpc": "2.0", "method": "notifications/initialized"},
                    session_id, HANDSHAKE_VERSION)
    with notified:
        assert notified.status_code == 202
    return session_id


def call_tool(http: requests.Session, url: str, session_id: str | None, id_: int, name: str,
              **arguments: Any) -> Message:
    return answer(post(http, url, request("tools/call", id_, name=name, arguments=arguments),
                       session_id, HANDSHAKE_VERSION))


@pytest.fixture
def proxied(
    mcp_http_server: Callable[..., McpHttpServer],
    recording_proxy: Callable[[str], RecordingProxy],
) -> Callable[..., tuple[McpHttpServer, RecordingProxy]]:
    """``proxied(mode)``: a started server in that mode and a recording proxy in front of it."""

    def start(mode: str, env: dict[str, str] | None = None) -> tuple[McpHttpServer, RecordingProxy]:
        server = mcp_http_server(mode, env)
        return server, recording_proxy(server.url)

    return start


@pytest.mark.parametrize("mode", STREAMABLE_MODES)
def test_initialize_is_answered_200_with_the_mode_s_content_type_and_session_header(
    proxied: Callable[..., tuple[McpHttpServer, RecordingProxy]], http: requests.Session,
    mode: str,
) -> None:
    _, proxy = proxied(mode)
    body = json.dumps(initialize_request()).encode()
    response = http.post(proxy.url, data=body, timeout=TIMEOUT, stream=True,
                         headers={"Accept": ACCEPT, "Content-Type": "application/json"})
    session_id = response.headers.get("Mcp-Session-Id")
    result = answer(response)["result"]

    assert response.headers["Content-Type"].split(";")[0] == ANSWER_TYPE[mode]
    if mode.startswith("stateful"):
        assert session_id is not None and len(session_id) == 32
    else:
        assert session_id is None
    assert result["serverInfo"] == {"name": "sark-test-sdk", "version": "1.0.0"}
    [exchange] = proxy.requests
    assert (exchange.method, exchange.path, exchange.body) == ("POST", "/mcp", body)
    assert exchange.header("accept") == ACCEPT
    assert exchange.header("host") == proxy.url.split("/")[2]
    assert exchange.status == 200
    assert exchange.response_header("mcp-session-id") == session_id


@pytest.mark.parametrize("mode", STREAMABLE_MODES)
def test_tools_call_echo_works_after_initialize_and_the_proxy_records_every_request(
    proxied: Callable[..., tuple[McpHttpServer, RecordingProxy]], http: requests.Session,
    mode: str,
) -> None:
    _, proxy = proxied(mode)
    session_id = open_session(http, proxy.url)
    result = call_tool(http, proxy.url, session_id, 2, "echo", text="hé")["result"]

    assert result == {"content": [{"type": "text", "text": "hé"}], "isError": False}
    recorded = proxy.requests
    assert [(e.method, e.path, e.status) for e in recorded] == [
        ("POST", "/mcp", 200), ("POST", "/mcp", 202), ("POST", "/mcp", 200)]
    assert [json.loads(e.body).get("method") for e in recorded] == [
        "initialize", "notifications/initialized", "tools/call"]
    assert [e.header("mcp-session-id") for e in recorded] == [None, session_id, session_id]
    assert [e.header("mcp-protocol-version") for e in recorded] == [
        None, HANDSHAKE_VERSION, HANDSHAKE_VERSION]
    assert recorded[1].response_header("content-length") == "0"


def test_stateless_tools_call_needs_no_initialize(
    proxied: Callable[..., tuple[McpHttpServer, RecordingProxy]], http: requests.Session,
) -> None:
    _, proxy = proxied("stateless-json")
    result = call_tool(http, proxy.url, None, 1, "echo", text="hi")["result"]

    assert result["content"] == [{"type": "text", "text": "hi"}]


@pytest.mark.parametrize("mode", ["stateless", "stateless-json", "stateful"])
def test_a_2026_07_28_request_is_served_without_handshake_or_session(
    proxied: Callable[..., tuple[McpHttpServer, RecordingProxy]], http: requests.Session,
    mode: str,
) -> None:
    _, proxy = proxied(mode)
    meta = {"io.modelcontextprotocol/protocolVersion": MODERN_VERSION,
            "io.modelcontextprotocol/clientCapabilities": {}}
    message = request("tools/call", 1, name="echo", arguments={"text": "new"}, _meta=meta)
    response = post(http, proxy.url, message, None, MODERN_VERSION,
                    **{"Mcp-Method": "tools/call", "Mcp-Name": "echo"})

    assert "Mcp-Session-Id" not in response.headers
    assert response.headers["Content-Type"] == "application/json"  # answered within 1 window
    assert answer(response)["result"]["content"] == [{"type": "text", "text": "new"}]


def test_delete_ends_the_session_and_its_id_then_gets_404(
    proxied: Callable[..., tuple[McpHttpServer, RecordingProxy]], http: requests.Session,
) -> None:
    _, proxy = proxied("stateful")
    session_id = open_session(http, proxy.url)
    headers = {"Mcp-Session-Id": session_id or "", "MCP-Protocol-Version": HANDSHAKE_VERSION}
    deleted = http.delete(proxy.url, headers=headers, timeout=TIMEOUT)
    after = post(http, proxy.url, request("tools/list", 2), session_id, HANDSHAKE_VERSION)
    with after:
        assert (deleted.status_code, after.status_code) == (200, 404)
        assert after.json()["error"] == {"code": -32600, "message": "Session not found"}
    assert [(e.method, e.status) for e in proxy.requests[-2:]] == [("DELETE", 200),
                                                                   ("POST", 404)]
    assert proxy.requests[-2].header("mcp-session-id") == session_id


def test_legacy_sse_stream_sends_the_endpoint_event_then_the_answers(
    proxied: Callable[..., tuple[McpHttpServer, RecordingProxy]], http: requests.Session,
) -> None:
    server, proxy = proxied("legacy-sse")
    assert server.url.endswith("/sse")
    with http.get(proxy.url, headers={"Accept": "text/event-stream"}, stream=True,
                  timeout=TIMEOUT) as stream_response:
        assert stream_response.status_code == 200
        assert stream_response.headers["Content-Type"].startswith("text/event-stream")
        stream = Sse(stream_response)
        event, endpoint = stream.next_event()
        assert event == "endpoint"
        assert endpoint.startswith("/messages/?session_id=")
        messages_url = proxy.url.rsplit("/sse", 1)[0] + endpoint

        posted = http.post(messages_url, json=initialize_request(), timeout=TIMEOUT)
        assert posted.status_code == 202
        reply = stream.next_message()
        assert reply["id"] == 1 and reply["result"]["protocolVersion"] == HANDSHAKE_VERSION
        http.post(messages_url, json={"jsonrpc": "2.0", "method": "notifications/initialized"},
                  timeout=TIMEOUT)
        http.post(messages_url, timeout=TIMEOUT,
                  json=request("tools/call", 2, name="echo", arguments={"text": "old"}))
        reply = stream.next_message()
        assert reply["result"]["content"] == [{"type": "text", "text": "old"}]

    recorded = proxy.requests
    assert [(e.method, e.path.split("?")[0], e.status) for e in recorded] == [
        ("GET", "/sse", 200), ("POST", "/messages/", 202), ("POST", "/messages/", 202),
        ("POST", "/messages/", 202)]


def test_the_proxy_relays_each_sse_event_as_it_arrives(
    proxied: Callable[..., tuple[McpHttpServer, RecordingProxy]], http: requests.Session,
) -> None:
    _, proxy = proxied("stateful")
    session_id = open_session(http, proxy.url)
    message = request("tools/call", 2, name="slow", arguments={"seconds": SLOW_SECONDS},
                      _meta={"progressToken": "p"})
    started = time.monotonic()
    with post(http, proxy.url, message, session_id, HANDSHAKE_VERSION) as response:
        first = Sse(response).next_message()
    elapsed = time.monotonic() - started

    assert first == {"jsonrpc": "2.0", "method": "notifications/progress",
                     "params": {"progressToken": "p", "progress": 0, "total": SLOW_SECONDS}}
    assert elapsed < SLOW_SECONDS / 2  # a buffering proxy would hold it until the result


def test_counter_counts_the_calls_of_the_process(
    proxied: Callable[..., tuple[McpHttpServer, RecordingProxy]], http: requests.Session,
) -> None:
    _, proxy = proxied("stateless-json")
    texts = [call_tool(http, proxy.url, None, n, "counter")["result"]["content"][0]["text"]
             for n in (1, 2, 3)]

    assert texts == ["1", "2", "3"]


@pytest.mark.parametrize("mode", ["stateful", "stateless-json"])
def test_crash_closes_the_connection_without_an_answer_and_exits_1(
    proxied: Callable[..., tuple[McpHttpServer, RecordingProxy]], http: requests.Session,
    mode: str,
) -> None:
    server, proxy = proxied(mode)
    session_id = open_session(http, proxy.url)
    message = request("tools/call", 2, name="crash", arguments={})
    with pytest.raises((requests.exceptions.ConnectionError,
                        requests.exceptions.ChunkedEncodingError)):
        answer(post(http, proxy.url, message, session_id, HANDSHAKE_VERSION))

    assert server.proc.wait(timeout=10) == 1
    assert json.loads(proxy.requests[-1].body)["params"]["name"] == "crash"


def test_sigterm_stops_the_server_within_2s_with_a_stream_open(
    proxied: Callable[..., tuple[McpHttpServer, RecordingProxy]], http: requests.Session,
) -> None:
    server, _ = proxied("legacy-sse")
    with http.get(server.url, stream=True, timeout=TIMEOUT) as response:
        assert Sse(response).next_event()[0] == "endpoint"
        started = time.monotonic()
        server.proc.terminate()
        code = server.proc.wait(timeout=10)
        elapsed = time.monotonic() - started

    assert (code, elapsed < 2.0) == (0, True)


def test_closing_the_proxy_cuts_an_open_stream_and_ends_its_threads(
    proxied: Callable[..., tuple[McpHttpServer, RecordingProxy]], http: requests.Session,
) -> None:
    _, proxy = proxied("legacy-sse")
    with http.get(proxy.url, stream=True, timeout=TIMEOUT) as response:
        stream = Sse(response)
        assert stream.next_event()[0] == "endpoint"
        assert [e.method for e in proxy.wait_for(1, timeout=5)] == ["GET"]
        proxy.close()
        with pytest.raises((StopIteration, requests.exceptions.ChunkedEncodingError)):
            stream.next_event()
    proxy.close()  # idempotent; the leak guard checks that its threads are gone


@pytest.mark.parametrize(("mode", "status"), [("stateful", 406), ("stateful-json", 200)])
def test_accepting_json_alone_is_enough_only_in_json_response_mode(
    proxied: Callable[..., tuple[McpHttpServer, RecordingProxy]], http: requests.Session,
    mode: str, status: int,
) -> None:
    _, proxy = proxied(mode)
    response = post(http, proxy.url, initialize_request(), Accept="application/json")
    with response:
        assert response.status_code == status
    assert proxy.requests[0].header("accept") == "application/json"
