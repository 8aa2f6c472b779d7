"""LegacySSEChannel (MCP HTTP+SSE) against hand-made and hostile loopback peers: an endpoint
on another origin is refused, every wait is bounded, the stream's end or an oversized event
fails what is pending at once, the server's own requests are answered by POST.

Each peer is a :class:`~hostile.http_peer.HostilePeer` running :class:`LegacyPeer`: the GET
stream gets an ``endpoint`` event, then whatever the POSTs put in its outbox.
"""

from __future__ import annotations

import json
import queue
import threading
import time
from collections.abc import Iterator
from typing import Any, Callable

import pytest
import requests
from hostile.http_peer import (
    CLOSE,
    RESET,
    HostilePeer,
    Item,
    Pause,
    Request,
    answer,
    sse_head,
    trickle,
)
from support import in_child, wait_for

from sark_sync import (
    AuthenticationError,
    ClientClosedError,
    ConnectionFailed,
    DeadlineExceeded,
    NotFoundError,
    ProtocolError,
    RPCError,
    TransportTimeout,
)
from sark_sync.resilience._watchdog import DEADLINE_MARGIN
from sark_sync.transports import LegacySSEChannel
from sark_sync.transports._mcp_remote import RemoteServer

pytestmark = pytest.mark.timeout(30)

#: The bound on failing every pending call once the stream is gone.
DEATH_BOUND = 1.0
INIT = {"protocolVersion": "2024-11-05", "capabilities": {},
        "serverInfo": {"name": "peer", "version": "0"}}

Reply = Callable[[dict[str, Any]], list[Item]]


def event(message: Any, kind: str = "message") -> bytes:
    return f"event: {kind}\r\ndata: {json.dumps(message)}\r\n\r\n".encode()


def polite(message: dict[str, Any]) -> list[Item]:
    """Answer every request: initialize as a 2024-11-05 server, tools/list with no tools,
    anything else with its params echoed."""
    if "id" not in message or "method" not in message:
        return []
    method = message["method"]
    result = INIT if method == "initialize" else {"tools": []} if method == "tools/list" \
        else {"echo": message.get("params")}
    return [event({"jsonrpc": "2.0", "id": message["id"], "result": result})]


def silent(message: dict[str, Any]) -> list[Item]:
    return []


class LegacyPeer:
    """The script of an HTTP+SSE server: GET gets ``head`` and the ``endpoint`` event (none if
    None), then the items the POSTs queue; each POST is recorded, answered ``post_status``,
    and ``reply(message)`` is queued on the stream."""

    def __init__(self, endpoint: bytes | None = b"/messages/?session_id=abc123",
                 reply: Reply = polite, post_status: int = 202, head: bytes | None = None,
                 before: list[Item] | None = None,
                 allow: Callable[[Request], bool] = lambda request: True) -> None:
        self.endpoint, self.reply, self.post_status = endpoint, reply, post_status
        self.allow = allow
        self.head = sse_head() if head is None else head
        self.before = before or []
        self.outbox: queue.Queue[Item] = queue.Queue()
        self.posts: list[Any] = []
        self.post_paths: list[str] = []

    def __call__(self, request: Request) -> Iterator[Item]:
        if not self.allow(request):
            yield answer(401, b'{"error": {"message": "who are you"}}')
            return
        if request.method == "GET":
            yield self.head
            yield from self.before
            if self.endpoint is not None:
                yield b"event: endpoint\r\ndata: " + self.endpoint + b"\r\n\r\n"
            while True:
                try:
                    yield self.outbox.get(timeout=0.05)
                except queue.Empty:
                    yield Pause(0)  # lets the peer see its stop between two polls
            return
        message = json.loads(request.body)
        self.posts.append(message)
        self.post_paths.append(request.target)
        for item in self.reply(message):
            self.outbox.put(item)
        yield answer(self.post_status, b"Accepted" if self.post_status == 202 else b"nope",
                     content_type="text/plain")


@pytest.fixture
def peers() -> Iterator[Callable[..., HostilePeer]]:
    """``peers(script)``: a started HostilePeer; every one is stopped after the test (after
    the channels, which the tests close themselves)."""
    made: list[HostilePeer] = []

    def start(script: Any) -> HostilePeer:
        made.append(HostilePeer(script))
        return made[-1]

    yield start
    for peer in made:
        peer.stop()


def channel(peer: HostilePeer, **options: Any) -> LegacySSEChannel:
    return LegacySSEChannel(peer.url + "/sse", name="peer", user_agent="t", **options)


def readers() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("sark-sync-sse-")]


def test_an_endpoint_on_another_port_is_refused_and_never_contacted(
        peers: Callable[..., HostilePeer]) -> None:
    decoy = peers(LegacyPeer())
    peer = peers(LegacyPeer(endpoint=f"http://127.0.0.1:{decoy.port}/messages/".encode()))
    link = channel(peer, headers={"Authorization": "Bearer s3cret-token"})
    with pytest.raises(ProtocolError) as caught:
        link.start(5.0)
    assert str(caught.value) == (
        f"'peer' sent an endpoint event that was refused: the endpoint is on another origin "
        f"(http://127.0.0.1:{decoy.port}; the stream is on http://127.0.0.1:{peer.port}): "
        f"messages go only to the stream's (url={peer.url}/sse, server=peer)")
    assert "s3cret" not in repr(caught.value)
    assert decoy.connections == 0 and readers() == [] and not link.alive
    with pytest.raises(ProtocolError):
        link.request("ping", None, 1.0)  # the refusal is final: nothing is ever sent


@pytest.mark.parametrize("endpoint", [b"http://localhost:{port}/messages/",
                                      b"https://127.0.0.1:{port}/messages/",
                                      b"//example.invalid/messages/"])
def test_an_endpoint_on_another_host_or_scheme_is_refused(
        peers: Callable[..., HostilePeer], endpoint: bytes) -> None:
    script = LegacyPeer()
    peer = peers(script)
    script.endpoint = endpoint.replace(b"{port}", str(peer.port).encode())
    link = channel(peer)
    with pytest.raises(ProtocolError, match="the endpoint is on another origin"):
        link.start(5.0)
    link.close()
    assert script.posts == [] and readers() == []


def test_an_absolute_endpoint_on_the_same_origin_is_taken(
        peers: Callable[..., HostilePeer]) -> None:
    script = LegacyPeer()
    peer = peers(script)
    script.endpoint = f"{peer.url}/elsewhere/post?sessionId=s-1".encode()
    link = channel(peer)
    try:
        link.start(5.0)
        assert link.session_id == "s-1"
        assert link.request("ping", None, 5.0) == {"echo": None}
        assert script.post_paths == ["/elsewhere/post?sessionId=s-1"]
    finally:
        link.close()


def test_a_stream_without_an_endpoint_times_out_within_its_bound(
        peers: Callable[..., HostilePeer]) -> None:
    peer = peers(LegacyPeer(endpoint=None, before=[b": ping\r\n\r\n", b"event: other\r\n"
                                                   b"data: x\r\n\r\n"]))
    link = channel(peer)
    started = time.monotonic()
    with pytest.raises(TransportTimeout) as caught:
        link.start(0.5)
    assert time.monotonic() - started < 0.5 + DEADLINE_MARGIN
    assert str(caught.value) == ("MCP server 'peer' did not answer the endpoint event within "
                                 "0.5s (server=peer)")
    assert readers() == [] and not link.alive


def test_a_get_answer_that_trickles_is_cut_at_its_bound(
        peers: Callable[..., HostilePeer]) -> None:
    def trickling(request: Request) -> Iterator[Item]:
        yield b"HTTP/1.1 200 OK\r\n"
        while True:
            yield b"X"
            yield Pause(0.05)

    link = channel(peers(trickling))
    started = time.monotonic()
    with pytest.raises(TransportTimeout, match=r"did not answer the HTTP\+SSE stream's GET "
                                               r"within 0\.5s"):
        link.start(0.5)
    assert time.monotonic() - started < 0.5 + DEADLINE_MARGIN
    assert readers() == []


def test_a_refused_get_raises_its_typed_error(peers: Callable[..., HostilePeer]) -> None:
    peer = peers(lambda request: [answer(404, b'{"error": {"message": "no such stream"}}')])
    link = channel(peer)
    with pytest.raises(NotFoundError) as caught:
        link.start(5.0)
    assert caught.value.status_code == 404 and caught.value.method == "GET"
    assert caught.value.message == "no such stream"


def test_a_get_answered_with_html_is_a_protocol_error(peers: Callable[..., HostilePeer]) -> None:
    peer = peers(lambda request: [answer(200, b"<html></html>", content_type="text/html")])
    link = channel(peer)
    with pytest.raises(ProtocolError, match="answered the HTTP\\+SSE stream's GET with "
                                            "Content-Type 'text/html'"):
        link.start(5.0)


def test_a_refused_post_raises_its_typed_error(peers: Callable[..., HostilePeer]) -> None:
    link = channel(peers(LegacyPeer(post_status=404)))
    try:
        link.start(5.0)
        with pytest.raises(NotFoundError) as caught:
            link.request("ping", None, 5.0)
        assert caught.value.status_code == 404 and caught.value.method == "POST"
        assert "abc123" not in str(caught.value)  # the session key stays out of messages
    finally:
        link.close()


@pytest.mark.parametrize("ending", [CLOSE, RESET])
def test_the_stream_ending_fails_every_pending_request_at_once(
        peers: Callable[..., HostilePeer], ending: Any) -> None:
    script = LegacyPeer(reply=silent)
    link = channel(peers(script))
    link.start(5.0)
    outcome: list[tuple[BaseException, float]] = []

    def call(n: int) -> None:
        try:
            link.request("tools/call", {"n": n}, 20.0)
        except BaseException as exc:  # reported below
            outcome.append((exc, time.monotonic()))

    callers = [threading.Thread(target=call, args=(n,)) for n in range(8)]
    for caller in callers:
        caller.start()
    wait_for(lambda: len(script.posts) == 8, what="the 8 requests to be posted")
    ended = time.monotonic()
    script.outbox.put(ending)
    for caller in callers:
        caller.join(5)
    assert len(outcome) == 8
    assert all(type(e) is ConnectionFailed and when - ended < DEATH_BOUND
               for e, when in outcome)
    assert "the HTTP+SSE stream of MCP server 'peer'" in str(outcome[0][0])
    assert not link.alive and readers() == []
    with pytest.raises(ConnectionFailed):
        link.request("ping", None, 5.0)
    assert len(script.posts) == 8  # the late request was never sent
    link.close()


def test_an_oversized_event_fails_the_pending_request_and_ends_the_session(
        peers: Callable[..., HostilePeer]) -> None:
    huge = event({"jsonrpc": "2.0", "id": 1, "result": {"text": "x" * 5000}})
    link = channel(peers(LegacyPeer(reply=lambda message: [huge])), max_event_bytes=1024)
    link.start(5.0)
    with pytest.raises(ProtocolError) as caught:
        link.request("ping", None, 5.0)
    assert "an event of more than 1024 bytes" in str(caught.value)
    assert "(max_event_bytes); the session is over" in str(caught.value)
    assert not link.alive
    link.close()
    assert readers() == []


def test_no_answer_is_bounded_and_the_server_is_told_to_cancel(
        peers: Callable[..., HostilePeer]) -> None:
    script = LegacyPeer(reply=silent)
    link = channel(peers(script))
    link.start(5.0)
    started = time.monotonic()
    with pytest.raises(DeadlineExceeded, match=r"did not answer tools/call within 0\.3s"):
        link.request("tools/call", {"name": "slow"}, 0.3)
    assert time.monotonic() - started < 0.3 + DEADLINE_MARGIN
    assert script.posts[-1] == {"jsonrpc": "2.0", "method": "notifications/cancelled",
                                "params": {"requestId": 1, "reason": "timeout"}}
    link.close()


def test_answers_find_their_caller_and_strays_are_ignored(
        peers: Callable[..., HostilePeer]) -> None:
    def reply(message: dict[str, Any]) -> list[Item]:
        if message.get("method") == "bad":
            return [event({"jsonrpc": "2.0", "id": message["id"],
                           "error": {"code": -32602, "message": "bad params"}})]
        if message.get("method") == "garbled":
            return [b'event: message\r\ndata: {"jsonrpc": "2.0", "id": '
                    + str(message["id"]).encode() + b', "result": }\r\n\r\n']
        return [event({"jsonrpc": "2.0", "id": 999, "result": "stray"}),
                event({"jsonrpc": "2.0", "id": message["id"], "result": "mine"})]

    link = channel(peers(LegacyPeer(reply=reply)))
    try:
        link.start(5.0)
        assert link.request("good", None, 5.0) == "mine"
        with pytest.raises(RPCError) as caught:
            link.request("bad", None, 5.0)
        assert caught.value.code == -32602 and caught.value.rpc_message == "bad params"
        with pytest.raises(ProtocolError, match="unreadable answer from 'peer'"):
            link.request("garbled", None, 5.0)
        assert link.alive and link.request("good", None, 5.0) == "mine"
    finally:
        link.close()


def test_the_servers_requests_are_answered_by_post(peers: Callable[..., HostilePeer]) -> None:
    def reply(message: dict[str, Any]) -> list[Item]:
        if message.get("method") == "tools/list":
            return [event({"jsonrpc": "2.0", "id": "s1", "method": "ping"}),
                    event({"jsonrpc": "2.0", "id": "s2", "method": "sampling/createMessage"}),
                    *polite(message)]
        return polite(message)

    script = LegacyPeer(reply=reply)
    peer = peers(script)
    with RemoteServer(peer.url + "/sse", transport="sse", timeout=5) as server:
        assert server.list_mcp_tools() == []  # answered after the server's two requests
    answers = [m for m in script.posts if "method" not in m]
    assert {"jsonrpc": "2.0", "id": "s1", "result": {}} in answers
    assert any(m["id"] == "s2" and m["error"]["code"] == -32601 for m in answers)


def test_close_from_another_thread_fails_a_pending_request(
        peers: Callable[..., HostilePeer]) -> None:
    script = LegacyPeer(reply=silent)
    link = channel(peers(script))
    link.start(5.0)
    outcome: list[BaseException] = []

    def call() -> None:
        try:
            link.request("tools/call", None, 20.0)
        except BaseException as exc:  # reported below
            outcome.append(exc)

    caller = threading.Thread(target=call)
    caller.start()
    wait_for(lambda: script.posts, what="the request to be posted")
    link.close()
    caller.join(5)
    assert [type(e) for e in outcome] == [ClientClosedError] and readers() == []
    assert str(outcome[0]) == "the session with 'peer' is closed (server=peer)"


class Rotating(requests.auth.AuthBase):
    """A bearer token that ``refresh()`` replaces with the next version."""

    def __init__(self) -> None:
        self.version = 0

    def __call__(self, request: Any) -> Any:
        request.headers["Authorization"] = f"Bearer tok-v{self.version}"
        return request

    def refresh(self) -> None:
        self.version += 1


def test_a_401_refreshes_the_credentials_once_for_the_stream_and_for_a_post(
        peers: Callable[..., HostilePeer]) -> None:
    def allow(request: Request) -> bool:  # the stream wants v1 or later, a POST v2 or later
        version = int(request.headers.get("authorization", "Bearer tok-v0")[-1])
        return version >= (1 if request.method == "GET" else 2)

    auth = Rotating()
    script = LegacyPeer(allow=allow)
    link = channel(peers(script), auth=auth)
    try:
        link.start(5.0)
        assert auth.version == 1
        assert link.request("ping", None, 5.0) == {"echo": None}
        assert auth.version == 2 and len(script.posts) == 1
    finally:
        link.close()


def test_a_401_without_a_refresh_raises_authentication_error_quoting_no_credential(
        peers: Callable[..., HostilePeer]) -> None:
    peer = peers(LegacyPeer(allow=lambda request: request.method == "GET"))
    link = channel(peer, headers={"Authorization": "Bearer s3cret-token"})
    try:
        link.start(5.0)
        with pytest.raises(AuthenticationError) as caught:
            link.request("ping", None, 5.0)
        assert caught.value.status_code == 401 and caught.value.method == "POST"
        assert "s3cret" not in str(caught.value) and "s3cret" not in repr(link)
    finally:
        link.close()


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_a_redirect_is_never_followed(peers: Callable[..., HostilePeer], method: str) -> None:
    decoy = peers(LegacyPeer())
    script = LegacyPeer()
    moved = answer(307, b"", headers={"Location": f"{decoy.url}/sse"}, reason="Moved")

    def redirecting(request: Request) -> Iterator[Item]:
        if request.method == method:
            yield moved
            return
        yield from script(request)

    link = channel(peers(redirecting))
    try:
        with pytest.raises(ProtocolError) as caught:
            link.start(5.0)
            link.request("ping", None, 5.0)
        what = "the stream's GET" if method == "GET" else "the POST of ping"
        assert str(caught.value).startswith(
            f"'peer' answered {what} with a redirect (307); HTTP+SSE redirects are not "
            "followed: give the final URL")
        assert caught.value.status_code == 307 and decoy.connections == 0
    finally:
        link.close()


def test_a_forked_child_never_uses_nor_ends_the_parents_session(
        peers: Callable[..., HostilePeer]) -> None:
    script = LegacyPeer()
    link = channel(peers(script))
    try:
        link.start(5.0)

        def in_the_child() -> Any:
            try:
                link.request("ping", None, 2.0)
            except ClientClosedError as exc:
                refused = str(exc)
            link.close()  # the parent's stream: never shut down from here
            return refused

        assert in_child(in_the_child) == (
            "the session with 'peer' belongs to the process that opened it; open a new one "
            "after fork() (server=peer)")
        assert link.alive and link.request("ping", None, 5.0) == {"echo": None}  # untouched
        assert len(script.posts) == 1  # the child sent nothing
    finally:
        link.close()


def test_an_answer_that_trickles_is_cut_at_the_requests_bound(
        peers: Callable[..., HostilePeer]) -> None:
    def reply(message: dict[str, Any]) -> list[Item]:
        if "id" not in message:
            return []
        return list(trickle(event({"jsonrpc": "2.0", "id": message["id"], "result": "slow"}),
                            interval=0.05, step=4))

    link = channel(peers(LegacyPeer(reply=reply)))
    try:
        link.start(5.0)
        started = time.monotonic()
        with pytest.raises(DeadlineExceeded, match=r"did not answer tools/call within 0\.3s"):
            link.request("tools/call", None, 0.3)
        assert time.monotonic() - started < 0.3 + DEADLINE_MARGIN
        assert link.alive  # the late answer is dropped; the session goes on
    finally:
        link.close()
