"""``send_direct`` puts on the wire exactly what ``Session.request`` would, for a session made
by ``new_session``: it only skips the merging that such a session never needs (issue 16).

Each case sends the same request both ways to a raw-socket peer on 127.0.0.1 and compares
what the peer read: request line, every header, body.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from hostile.http_peer import HostilePeer, Request, json_answer

from sark_sync.transports._common import new_session, send_direct
from sark_sync.transports._guarded import GuardedAdapter

CASES: list[dict[str, Any]] = [
    {"method": "GET", "path": "/api/v1/servers", "params": {"page": 2, "page_size": 50},
     "data": None, "headers": {"X-Request-ID": "r-1"}},
    {"method": "post", "path": "/api/v1/tools/invoke", "params": None,
     "data": b'{"tool":"echo","parameters":{"text":"h\\u00e9"}}',
     "headers": {"X-Request-ID": "r-2", "Content-Type": "application/json",
                 "X-API-Key": "k"}},
    {"method": "POST", "path": "/api/v1/x", "params": None, "data": None,
     "headers": {"Accept": "text/plain", "user-agent": "mine/1"}},
    {"method": "DELETE", "path": "/a%20b/c?already=1", "params": {"q": "a b&c", "n": ["1", "2"]},
     "data": b"", "headers": {}},
]


@pytest.fixture
def peer() -> Iterator[HostilePeer]:
    with HostilePeer(json_answer(lambda request: {})) as server:
        yield server


def seen(peer: HostilePeer, index: int) -> tuple[str, str, dict[str, str], bytes]:
    request: Request = peer.requests[index]
    return request.method, request.target, request.headers, request.body


@pytest.mark.parametrize("case", CASES, ids=[c["method"] + c["path"] for c in CASES])
def test_the_request_on_the_wire_is_the_one_session_request_sends(
        peer: HostilePeer, case: dict[str, Any]) -> None:
    session = new_session(peer.url, "sark-sync-test/1", None,
                          GuardedAdapter(max_retries=0))
    try:
        url = peer.url + case["path"]
        with session.request(case["method"], url, params=case["params"], data=case["data"],
                             headers=case["headers"], timeout=(5, 5), allow_redirects=False,
                             stream=True) as expected:
            expected.content  # noqa: B018 - read to the end: the connection is reused
        with send_direct(session, case["method"], url, params=case["params"],
                         data=case["data"], headers=case["headers"],
                         timeout=(5, 5)) as response:
            assert response.json() == {}
            assert response.request.headers == expected.request.headers
        assert seen(peer, 1) == seen(peer, 0)
        assert len(peer.requests) == 2
    finally:
        session.close()


def test_credentials_in_the_url_become_basic_auth_as_with_session_request(
        peer: HostilePeer) -> None:
    session = new_session(peer.url, "sark-sync-test/1", None, GuardedAdapter(max_retries=0))
    url = peer.url.replace("http://", "http://user:p%40ss@") + "/x"
    try:
        with session.request("GET", url, timeout=(5, 5), stream=True) as expected:
            expected.content  # noqa: B018
        with send_direct(session, "GET", url, params=None, data=None, headers={},
                         timeout=(5, 5)) as response:
            response.content  # noqa: B018
        assert seen(peer, 1) == seen(peer, 0)
        assert peer.requests[1].headers["authorization"].startswith("Basic ")
    finally:
        session.close()


def test_a_cookie_the_peer_sets_is_never_sent_back(peer: HostilePeer) -> None:
    cookie_peer = HostilePeer(lambda request: iter([
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nSet-Cookie: s=1; Path=/\r\n"
        b"Content-Length: 2\r\n\r\n{}"]))
    session = new_session(cookie_peer.url, "sark-sync-test/1", None,
                          GuardedAdapter(max_retries=0))
    try:
        for _ in range(2):
            with send_direct(session, "GET", cookie_peer.url + "/", params=None, data=None,
                             headers={}, timeout=(5, 5)) as response:
                response.content  # noqa: B018
        assert "cookie" not in cookie_peer.requests[1].headers
        assert not session.cookies
    finally:
        session.close()
        cookie_peer.stop()


def test_a_session_with_auth_or_hooks_goes_through_session_request(peer: HostilePeer) -> None:
    session = new_session(peer.url, "sark-sync-test/1", None, GuardedAdapter(max_retries=0))
    seen_by_hook: list[int] = []
    session.hooks["response"].append(lambda response, **_: seen_by_hook.append(1))
    session.auth = ("user", "secret")
    try:
        with send_direct(session, "GET", peer.url + "/x", params=None, data=None, headers={},
                         timeout=(5, 5)) as response:
            response.content  # noqa: B018
        assert seen_by_hook == [1]
        assert peer.requests[0].headers["authorization"].startswith("Basic ")
    finally:
        session.close()
