"""RemoteServer when things go wrong, against the official MCP server (mcp 2.3.0) behind the
recording proxy, and against small loopback peers where the official server cannot misbehave
as needed (401, 404 forever, redirects): a lost session is opened again once, credentials are
refreshed once, redirects stay on their origin, a forked child keeps its hands off the
parent's session, timeouts are deadlines and a killed server fails the call at once."""

from __future__ import annotations

import http.server
import json
import logging
import os
import select
import signal
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any, Callable

import pytest
import requests
from realcomp.fixtures import McpHttpServer
from realcomp.recording_proxy import Exchange, RecordingProxy

import sark_sync
from sark_sync import (
    AuthenticationError,
    DeadlineExceeded,
    ProtocolError,
    RetryPolicy,
    TransportTimeout,
)
from sark_sync._exceptions import SessionExpiredError  # public once the lead exports it
from sark_sync.transports._mcp_remote import RemoteServer

pytestmark = [pytest.mark.realcomp, pytest.mark.timeout(60)]

#: The revision with sessions (the official server answers 2026-07-28, sessionless, to a
#: client that probes for it).
V2025 = "2025-11-25"
#: A secret the peers accept as a credential: it must never show up in an error or a log.
TOKEN_1, TOKEN_2 = "tok-one-9f8e7d6c5b4a", "tok-two-1a2b3c4d5e6f"

Answer = Callable[[str, str, "dict[str, str]", Any], "tuple[int, dict[str, str], Any]"]


def bodies(exchanges: list[Exchange]) -> list[Any]:
    return [json.loads(x.body) if x.body else None for x in exchanges]


def calls(exchanges: list[Exchange], method: str) -> list[Exchange]:
    return [x for x, body in zip(exchanges, bodies(exchanges))
            if isinstance(body, dict) and body.get("method") == method]


def describe(exchanges: list[Exchange]) -> list[tuple[Any, ...]]:
    """What a failed assertion shows: method, JSON-RPC method, status, session, error."""
    return [(x.method, (b or {}).get("method"), x.status, x.header("Mcp-Session-Id"), x.error)
            for x, b in zip(exchanges, bodies(exchanges))]


def session(url: str, **options: Any) -> RemoteServer:
    """A connected RemoteServer at 2025-11-25 (initialize, Mcp-Session-Id)."""
    server = RemoteServer(url, timeout=10, protocol_version=V2025, **options)
    return server.connect()


def restart(old: McpHttpServer, start: Callable[..., McpHttpServer],
            proxy: RecordingProxy) -> McpHttpServer:
    """Stop ``old`` and put a new server in the same mode behind the same proxy URL."""
    old.stop()
    new = start(old.mode)
    proxy.retarget(new.url)
    return new


# -- loopback peers ---------------------------------------------------------------------------


def mcp_answer(method: str, path: str, headers: dict[str, str], body: Any,
               session_id: str = "peer-session-1") -> tuple[int, dict[str, str], Any]:
    """A minimal 2025-11-25 MCP server answering with JSON: initialize opens a session,
    notifications get 202, tools/call echoes ``text``; discover is refused as a 2025 server
    refuses it (400)."""
    if method == "DELETE":
        return 200, {}, None
    if not isinstance(body, dict) or "id" not in body:
        return 202, {}, None
    rpc = body.get("method")
    if rpc == "server/discover":
        return 400, {}, {"jsonrpc": "2.0", "id": None,
                         "error": {"code": -32600, "message": "Bad Request: Missing session ID"}}
    result: dict[str, Any] = {}
    extra: dict[str, str] = {}
    if rpc == "initialize":
        result = {"protocolVersion": V2025, "capabilities": {"tools": {}},
                  "serverInfo": {"name": "peer", "version": "1"}}
        extra = {"Mcp-Session-Id": session_id}
    elif rpc == "tools/call":
        text = body["params"]["arguments"].get("text", "")
        result = {"content": [{"type": "text", "text": text}], "isError": False}
    elif rpc == "tools/list":
        result = {"tools": []}
    return 200, extra, {"jsonrpc": "2.0", "id": body["id"], "result": result}


class Peer:
    """A small HTTP server on 127.0.0.1 port 0 whose answers ``answer(method, path, headers,
    body)`` decides; ``seen`` records (method, path, lower-cased headers, JSON body)."""

    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.seen: list[tuple[str, str, dict[str, str], Any]] = []
        self.lock = threading.Lock()
        peer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            timeout = 5  # an idle keep-alive connection ends, so close() never waits long

            def setup(self) -> None:
                super().setup()
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                self.serve()

            def do_DELETE(self) -> None:
                self.serve()

            def serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                body = json.loads(raw) if raw else None
                headers = {k.lower(): v for k, v in self.headers.items()}
                with peer.lock:
                    peer.seen.append((self.command, self.path, headers, body))
                status, extra, payload = peer.answer(self.command, self.path, headers, body)
                data = json.dumps(payload).encode() if payload is not None else b""
                self.send_response(status)
                for name, value in extra.items():
                    self.send_header(name, value)
                if data:
                    self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = False  # server_close() joins them
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, name="test-peer")
        self.thread.start()

    def methods(self) -> list[str]:
        with self.lock:
            return [body["method"] for _, _, _, body in self.seen
                    if isinstance(body, dict) and "method" in body]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@pytest.fixture
def peer() -> Iterator[Callable[[Answer], Peer]]:
    made: list[Peer] = []

    def make(answer: Answer) -> Peer:
        made.append(Peer(answer))
        return made[-1]

    yield make
    for one in made:
        one.close()


# -- 1. a lost session ------------------------------------------------------------------------


def test_a_restarted_server_costs_one_new_initialize_and_the_call_succeeds(
    mcp_http_server: Callable[..., McpHttpServer],
    recording_proxy: Callable[[str], RecordingProxy],
) -> None:
    first = mcp_http_server("stateful")
    proxy = recording_proxy(first.url)
    with session(proxy.url) as server:
        old_session = server.session_id
        assert server.call_tool("echo", {"text": "before"}).text == "before"
        restart(first, mcp_http_server, proxy)
        before = len(proxy.requests)
        assert server.call_tool("echo", {"text": "after"}).text == "after"
        new_session = server.session_id
    everything = proxy.requests[before:]
    seen = describe(everything)
    listening = [x for x in everything if x.method == "GET"]  # the new session's GET stream
    assert {x.header("Mcp-Session-Id") for x in listening} <= {new_session}, seen
    after = [x for x in everything if x.method != "GET"]
    assert [(b or {}).get("method", "DELETE") for b in bodies(after)] == [
        "tools/call", "initialize", "notifications/initialized", "tools/call", "DELETE"], seen
    assert [x.status for x in after] == [404, 200, 202, 200, 200], seen
    assert old_session is not None and new_session not in (None, old_session)
    assert after[0].header("Mcp-Session-Id") == old_session
    assert after[1].header("Mcp-Session-Id") is None  # a fresh initialize
    assert after[1].header("MCP-Protocol-Version") is None
    assert after[3].header("Mcp-Session-Id") == new_session
    assert after[4].header("Mcp-Session-Id") == new_session


def test_eight_threads_that_hit_the_lost_session_share_one_new_initialize(
    mcp_http_server: Callable[..., McpHttpServer],
    recording_proxy: Callable[[str], RecordingProxy],
) -> None:
    first = mcp_http_server("stateful")
    proxy = recording_proxy(first.url)
    with session(proxy.url) as server:
        server.list_tools()  # so that the calls below go straight to tools/call
        restart(first, mcp_http_server, proxy)
        before = len(proxy.requests)
        barrier = threading.Barrier(8, timeout=10)
        results: dict[int, Any] = {}

        def call(n: int) -> None:
            barrier.wait()
            try:
                results[n] = server.call_tool("echo", {"text": f"t{n}"}).text
            except Exception as exc:  # reported below
                results[n] = exc

        threads = [threading.Thread(target=call, args=(n,)) for n in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        new_session = server.session_id
    assert results == {n: f"t{n}" for n in range(8)}
    after = proxy.requests[before:]
    assert len(calls(after, "initialize")) == 1
    answered = [x for x in calls(after, "tools/call") if x.status == 200]
    assert len(answered) == 8
    assert {x.header("Mcp-Session-Id") for x in answered} == {new_session}
    assert 1 <= len([x for x in calls(after, "tools/call") if x.status == 404]) <= 8


def test_invoke_tool_after_a_restart_makes_one_new_initialize_through_the_pipeline(
    mcp_http_server: Callable[..., McpHttpServer],
    recording_proxy: Callable[[str], RecordingProxy],
) -> None:
    first = mcp_http_server("stateful")
    proxy = recording_proxy(first.url)
    with sark_sync.GatewayClient(
            "http://127.0.0.1:9", audit=[],
            remote_servers={"sdk": {"url": proxy.url, "protocol_version": V2025}}) as client:
        assert client.invoke_tool("sdk", "counter").text == "1"
        restart(first, mcp_http_server, proxy)
        before = len(proxy.requests)
        result = client.invoke_tool("sdk", "counter")  # no hints, yet safe: never ran
        assert result.text == "1" and result.attempts == 1  # the new process ran it once
    after = proxy.requests[before:]
    assert len(calls(after, "initialize")) == 1
    assert [x.status for x in calls(after, "tools/call")] == [404, 200]


@pytest.mark.timeout(20)
def test_a_server_that_loses_every_session_raises_session_expired_after_one_renewal(
    peer: Callable[[Answer], Peer],
) -> None:
    def answer(method: str, path: str, headers: dict[str, str], body: Any
               ) -> tuple[int, dict[str, str], Any]:
        if isinstance(body, dict) and body.get("method") == "tools/call":
            return 404, {}, {"jsonrpc": "2.0", "id": None,
                             "error": {"code": -32600, "message": "Session not found"}}
        return mcp_answer(method, path, headers, body, f"s{lost.methods().count('initialize')}")

    lost = peer(answer)
    with session(lost.url + "/mcp", name="forgetful") as server:
        started = time.monotonic()
        with pytest.raises(SessionExpiredError) as caught:
            server.call_tool("echo", {"text": "x"})
        assert time.monotonic() - started < 2.0
    assert str(caught.value) == ("MCP server 'forgetful' does not know the session of "
                                 "tools/call (404), a new one included (status_code=404, "
                                 "server=forgetful)")
    assert isinstance(caught.value, sark_sync.TransportError)
    assert caught.value.server == "forgetful" and caught.value.status_code == 404
    sent = lost.methods()
    assert sent.count("initialize") == 2 and sent.count("tools/call") == 2
    assert [h.get("mcp-session-id") for m, _, h, b in lost.seen
            if isinstance(b, dict) and b.get("method") == "tools/call"] == ["s1", "s2"]


# -- 2. auth= ---------------------------------------------------------------------------------


class RotatingToken(requests.auth.AuthBase):
    """A bearer token set on each request; ``refresh()`` fetches the next one."""

    def __init__(self, tokens: list[str]) -> None:
        self.tokens = tokens
        self.refreshes = 0

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = f"Bearer {self.tokens[0]}"
        return request

    def refresh(self) -> None:
        self.refreshes += 1
        if len(self.tokens) > 1:
            self.tokens.pop(0)


def guarded_answer(valid: list[str]) -> Answer:
    """mcp_answer behind a bearer check: 401 unless the token is ``valid[0]``."""
    def answer(method: str, path: str, headers: dict[str, str], body: Any
               ) -> tuple[int, dict[str, str], Any]:
        if headers.get("authorization") != f"Bearer {valid[0]}":
            return 401, {"WWW-Authenticate": "Bearer"}, None
        return mcp_answer(method, path, headers, body)
    return answer


def test_auth_sets_its_header_on_every_request_of_the_official_server(
    mcp_http_server: Callable[..., McpHttpServer],
    recording_proxy: Callable[[str], RecordingProxy],
) -> None:
    proxy = recording_proxy(mcp_http_server("stateful").url)
    with session(proxy.url, auth=RotatingToken([TOKEN_1])) as server:
        assert server.call_tool("echo", {"text": "a"}).text == "a"
    assert {x.header("Authorization") for x in proxy.requests} == {f"Bearer {TOKEN_1}"}
    assert [x.method for x in proxy.requests][-1] == "DELETE"


def test_a_401_refreshes_the_credentials_once_and_the_request_is_resent(
    peer: Callable[[Answer], Peer],
) -> None:
    valid = [TOKEN_1]
    guarded = peer(guarded_answer(valid))
    auth = RotatingToken([TOKEN_1, TOKEN_2])
    with session(guarded.url + "/mcp", auth=auth) as server:
        assert server.call_tool("echo", {"text": "one"}).text == "one"
        valid[0] = TOKEN_2  # the server rotates its key
        assert server.call_tool("echo", {"text": "two"}).text == "two"
    assert auth.refreshes == 1
    tool_calls = [(h.get("authorization"), b["params"]["arguments"]["text"])
                  for _, _, h, b in guarded.seen
                  if isinstance(b, dict) and b.get("method") == "tools/call"]
    assert tool_calls == [(f"Bearer {TOKEN_1}", "one"), (f"Bearer {TOKEN_1}", "two"),
                          (f"Bearer {TOKEN_2}", "two")]


@pytest.mark.parametrize("auth", [RotatingToken([TOKEN_1]), ("user", TOKEN_1)],
                         ids=["refresh-does-not-help", "basic-without-refresh"])
def test_a_second_401_raises_authentication_error_without_the_credential(
    auth: Any, peer: Callable[[Answer], Peer], caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    refused = peer(guarded_answer(["something-else"]))
    server = RemoteServer(refused.url + "/mcp", name="locked", timeout=10,
                          protocol_version=V2025, auth=auth)
    with pytest.raises(AuthenticationError) as caught:
        server.connect()
    server.close()
    assert str(caught.value) == ("MCP server 'locked' refused the credentials (401) "
                                 f"(method=POST, url={refused.url}/mcp, status_code=401, "
                                 "server=locked)")
    sent = [b["method"] for _, _, _, b in refused.seen]
    if isinstance(auth, RotatingToken):
        assert auth.refreshes == 1 and sent == ["initialize", "initialize"]
    else:
        assert sent == ["initialize"]  # nothing to refresh: one 401 is final
    for text in (str(caught.value), repr(caught.value), repr(server), caplog.text):
        assert TOKEN_1 not in text


# -- 3. redirects -----------------------------------------------------------------------------


def test_a_same_origin_307_is_followed_with_its_method_and_body(
    peer: Callable[[Answer], Peer],
) -> None:
    def answer(method: str, path: str, headers: dict[str, str], body: Any
               ) -> tuple[int, dict[str, str], Any]:
        if path == "/old":
            return 307, {"Location": "/mcp"}, None
        return mcp_answer(method, path, headers, body)

    moved = peer(answer)
    with session(moved.url + "/old") as server:
        assert server.call_tool("echo", {"text": "moved"}).text == "moved"
    posts = [(m, p, (b or {}).get("method")) for m, p, _, b in moved.seen if m == "POST"]
    assert posts[:2] == [("POST", "/old", "initialize"), ("POST", "/mcp", "initialize")]
    assert [(p, b["params"]) for m, p, _, b in moved.seen
            if isinstance(b, dict) and b.get("method") == "tools/call"] == [
        ("/old", {"name": "echo", "arguments": {"text": "moved"}}),
        ("/mcp", {"name": "echo", "arguments": {"text": "moved"}})]


@pytest.mark.parametrize("status", [307, 308, 302])
def test_a_redirect_to_another_origin_or_one_that_drops_the_body_is_refused(
    status: int, peer: Callable[[Answer], Peer],
) -> None:
    elsewhere = peer(mcp_answer)
    same_origin = status == 302

    def answer(method: str, path: str, headers: dict[str, str], body: Any
               ) -> tuple[int, dict[str, str], Any]:
        return status, {"Location": "/mcp" if same_origin else elsewhere.url + "/mcp"}, None

    redirecting = peer(answer)
    server = RemoteServer(redirecting.url + "/mcp", name="mover", timeout=10,
                          protocol_version=V2025, auth=RotatingToken([TOKEN_1]))
    with pytest.raises(ProtocolError) as caught:
        server.connect()
    server.close()
    expected = ("a redirect that would turn the POST into a GET" if same_origin
                else "to another origin")
    assert expected in str(caught.value) and "not followed" in str(caught.value)
    assert caught.value.status_code == status and caught.value.server == "mover"
    assert elsewhere.url not in str(caught.value)
    assert elsewhere.seen == []  # never reached, so never given the credentials
    assert len(redirecting.seen) == 1


# -- 4. fork ----------------------------------------------------------------------------------


def _read_all(fd: int, timeout: float) -> bytes:
    data = b""
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not select.select([fd], [], [], remaining)[0]:
            raise TimeoutError(f"the child said {data!r} within {timeout}s")
        chunk = os.read(fd, 4096)
        if not chunk:
            return data
        data += chunk


def _reap(pid: int, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        select.select([], [], [], 0.02)  # poll with a deadline
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    raise TimeoutError(f"the child did not exit within {timeout}s")


def test_a_forked_child_opens_its_own_session_and_never_deletes_the_parents(
    mcp_http_server: Callable[..., McpHttpServer],
    recording_proxy: Callable[[str], RecordingProxy],
) -> None:
    proxy = recording_proxy(mcp_http_server("stateful").url)
    server = session(proxy.url)
    parent_session = server.session_id
    assert server.call_tool("echo", {"text": "parent"}).text == "parent"
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report, and never return into pytest
        code = 1
        try:
            os.close(read_fd)
            text = server.call_tool("echo", {"text": "child"}).text
            report = [text, server.session_id]
            server.close()
            os.write(write_fd, json.dumps(report).encode())
            code = 0
        except BaseException as exc:
            os.write(write_fd, json.dumps(["error", repr(exc)]).encode())
        finally:
            os._exit(code)
    os.close(write_fd)
    try:
        report = json.loads(_read_all(read_fd, 20) or b"null")
    finally:
        os.close(read_fd)
        code = _reap(pid, 10)
    assert code == 0, report
    text, child_session = report
    assert text == "child" and child_session not in (None, parent_session)
    # The parent's session still works: the child neither used nor ended it.
    assert server.call_tool("echo", {"text": "again"}).text == "again"
    assert server.session_id == parent_session
    server.close()
    exchanges = proxy.requests
    deletes = [x.header("Mcp-Session-Id") for x in exchanges if x.method == "DELETE"]
    assert deletes == [child_session, parent_session]  # each ended its own, once
    echoes = {b["params"]["arguments"]["text"]: x.header("Mcp-Session-Id")
              for x, b in zip(exchanges, bodies(exchanges))
              if isinstance(b, dict) and b.get("method") == "tools/call"}
    assert echoes == {"parent": parent_session, "child": child_session,
                      "again": parent_session}


def test_a_forked_child_of_a_client_connects_its_remote_server_anew(
    mcp_http_server: Callable[..., McpHttpServer],
    recording_proxy: Callable[[str], RecordingProxy],
) -> None:
    proxy = recording_proxy(mcp_http_server("stateful").url)
    client = sark_sync.GatewayClient(
        "http://127.0.0.1:9", audit=[],
        remote_servers={"sdk": {"url": proxy.url, "protocol_version": V2025}})
    try:
        assert client.invoke_tool("sdk", "echo", {"text": "parent"}).text == "parent"
        parent_session = calls(proxy.requests, "tools/call")[0].header("Mcp-Session-Id")
        read_fd, write_fd = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: report, and never return into pytest
            code = 1
            try:
                os.close(read_fd)
                text = client.invoke_tool("sdk", "echo", {"text": "child"}).text
                client.close()
                os.write(write_fd, json.dumps([text]).encode())
                code = 0
            except BaseException as exc:
                os.write(write_fd, json.dumps(["error", repr(exc)]).encode())
            finally:
                os._exit(code)
        os.close(write_fd)
        try:
            report = json.loads(_read_all(read_fd, 20) or b"null")
        finally:
            os.close(read_fd)
            code = _reap(pid, 10)
        assert code == 0 and report == ["child"], report
        assert client.invoke_tool("sdk", "echo", {"text": "again"}).text == "again"
    finally:
        client.close()
    exchanges = proxy.requests
    sessions = {json.loads(x.body)["params"]["arguments"]["text"]: x.header("Mcp-Session-Id")
                for x in calls(exchanges, "tools/call")}
    child_session = sessions["child"]
    assert sessions == {"parent": parent_session, "child": child_session,
                        "again": parent_session}
    assert child_session not in (None, parent_session)
    assert len(calls(exchanges, "initialize")) == 2  # the parent's and the child's
    assert [x.header("Mcp-Session-Id") for x in exchanges if x.method == "DELETE"] == [
        child_session, parent_session]


# -- 5. timeouts and a killed server ----------------------------------------------------------


def test_call_tool_past_its_timeout_raises_deadline_exceeded_and_cancels(
    mcp_http_server: Callable[..., McpHttpServer],
    recording_proxy: Callable[[str], RecordingProxy],
) -> None:
    proxy = recording_proxy(mcp_http_server("stateful").url)
    with session(proxy.url, name="sdk") as server:
        started = time.monotonic()
        with pytest.raises(DeadlineExceeded) as caught:
            server.call_tool("slow", {"seconds": 60}, timeout=0.5)
        elapsed = time.monotonic() - started
        cancels = proxy.wait_for(len(proxy.requests), 5)
    assert 0.5 <= elapsed < 0.6
    assert str(caught.value) == ("MCP server 'sdk' did not answer tools/call within 0.5s "
                                 "(server=sdk, timeout=0.5, last_error=TransportTimeout)")
    assert isinstance(caught.value.last_error, TransportTimeout)
    call = calls(cancels, "tools/call")[0]
    assert [b["params"] for b in bodies(calls(cancels, "notifications/cancelled"))] == [
        {"requestId": json.loads(call.body)["id"], "reason": "timeout"}]


def test_invoke_tool_past_its_timeout_raises_deadline_exceeded_and_cancels(
    mcp_http_server: Callable[..., McpHttpServer],
    recording_proxy: Callable[[str], RecordingProxy],
) -> None:
    proxy = recording_proxy(mcp_http_server("stateful").url)
    with sark_sync.GatewayClient(
            "http://127.0.0.1:9", audit=[],
            remote_servers={"sdk": {"url": proxy.url, "protocol_version": V2025}}) as client:
        client.list_tools("sdk")  # connected: the timeout below is the call's alone
        started = time.monotonic()
        with pytest.raises(DeadlineExceeded) as caught:
            client.invoke_tool("sdk", "slow", {"seconds": 60}, timeout=0.5)
        elapsed = time.monotonic() - started
        assert 0.5 <= elapsed < 0.6
        assert caught.value.server == "sdk" and caught.value.tool == "slow"
        exchanges = proxy.requests
        assert len(calls(exchanges, "tools/call")) == 1  # slow has no hints: never resent
        assert [b["params"]["reason"] for b in
                bodies(calls(exchanges, "notifications/cancelled"))] == ["timeout"]


@pytest.mark.parametrize("mode", ["stateful", "stateless"])
def test_a_server_killed_mid_call_fails_the_call_within_a_second(
    mode: str, mcp_http_server: Callable[..., McpHttpServer],
    recording_proxy: Callable[[str], RecordingProxy],
) -> None:
    upstream = mcp_http_server(mode)
    proxy = recording_proxy(upstream.url)
    running = threading.Event()  # the tool's first progress: it is inside its sleep
    killed: list[float] = []

    def kill_once_running() -> None:
        if running.wait(10):
            killed.append(time.monotonic())
            upstream.proc.send_signal(signal.SIGKILL)

    with session(proxy.url, name="doomed") as server:
        killer = threading.Thread(target=kill_once_running)
        killer.start()
        try:
            with pytest.raises(sark_sync.ConnectionFailed) as caught:
                server.call_tool("slow", {"seconds": 60}, timeout=30,
                                 progress=lambda *_: running.set())
            failed = time.monotonic()
        finally:
            running.set()
            killer.join(15)
    assert killed and failed - killed[0] < 1.0
    assert caught.value.server == "doomed"
    assert str(caught.value).startswith("MCP server 'doomed': the response stream of "
                                        "tools/call broke off")


# -- 7. retries follow the tool's hints -------------------------------------------------------


def test_after_a_connection_failure_only_a_tool_annotated_safe_is_sent_again(
    mcp_http_server: Callable[..., McpHttpServer],
    recording_proxy: Callable[[str], RecordingProxy],
) -> None:
    upstream = mcp_http_server("stateless-json")
    proxy = recording_proxy(upstream.url)
    retry = RetryPolicy(attempts=3, backoff_base=0.01, backoff_max=0.02)
    with sark_sync.GatewayClient(
            "http://127.0.0.1:9", audit=[], retry=retry,
            breaker=sark_sync.BreakerPolicy(enabled=False),
            remote_servers={"sdk": {"url": proxy.url, "protocol_version": V2025}}) as client:
        assert client.invoke_tool("sdk", "counter").text == "1"
        upstream.stop()
        with pytest.raises(sark_sync.ConnectionFailed):
            client.invoke_tool("sdk", "counter", timeout=10)  # no hints: sent once
        with pytest.raises(sark_sync.ConnectionFailed) as caught:
            client.invoke_tool("sdk", "echo", {"text": "x"}, timeout=10)  # readOnlyHint
    assert caught.value.attempts == 3
    names = [json.loads(x.body)["params"]["name"] for x in calls(proxy.requests, "tools/call")]
    assert names == ["counter", "counter", "echo", "echo", "echo"]
