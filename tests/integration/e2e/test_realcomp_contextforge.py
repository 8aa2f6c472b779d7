"""sark_sync's RemoteServer against IBM ContextForge 1.1.0, a real MCP gateway, in its default
(stateless, JSON) and its stateful mode: the official SDK server registered through the REST
API, its tools listed and called through the virtual server's ``/servers/{id}/mcp`` endpoint
with a JWT ContextForge issued, seen on the wire by the recording proxy.

ContextForge 1.1.0 answers ``server/discover`` (``supportedVersions: ["2026-07-28"]``) in both
modes, so ``protocol_version="auto"`` speaks 2026-07-28 to it, without a session even in the
stateful mode; ``"2025-11-25"`` takes the ``initialize`` path, where the stateful mode gives
a session that close() ends with DELETE. Both paths are tested in both modes.

The ``contextforge`` fixture (realcomp/fixtures.py) is session-scoped and parametrized by mode:
one ContextForge per mode for the whole run, so pytest groups these tests by mode."""

from __future__ import annotations

import json
import re
import time
from typing import Any, Callable

import pytest
from realcomp.contextforge import ContextForgePeer
from realcomp.fixtures import McpHttpServer
from realcomp.recording_proxy import Exchange, RecordingProxy

import sark_sync
from sark_sync import AuthenticationError, RemoteServer
from sark_sync.governance import CallableSink

# The first test of each mode pays for starting ContextForge (10-60 s: START_TIMEOUT is 120 s);
# every call after that is bounded by CALL_TIMEOUT.
pytestmark = [pytest.mark.realcomp, pytest.mark.slow, pytest.mark.timeout(180)]

#: ``protocol_version=`` of the client, and the revision then spoken with ContextForge.
VERSIONS = {"auto": "2026-07-28", "2025-11-25": "2025-11-25"}
#: Tools of mcp_http_server.py that every test here relies on.
SDK_BASE_TOOLS = {"add", "counter", "crash", "echo", "fail", "slow", "whoami"}
#: The handshake revision.
V2025 = "2025-11-25"
#: The bound of one call here; ContextForge answers in milliseconds when idle.
CALL_TIMEOUT = 20.0


def _listed_as(name: str) -> str:
    """The name ContextForge 1.1.0 gives a tool of gateway ``sdk``: both slugified (lower
    case, each run of other characters than letters and digits one ``-``), joined by ``-``
    (its ``build_gateway_tool_invocation_name``): ``ping_client`` is ``sdk-ping-client``."""
    return "sdk-" + re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def _messages(proxy: RecordingProxy) -> list[tuple[Exchange, Any]]:
    return [(x, json.loads(x.body) if x.body else None) for x in proxy.requests]


def _connect(url: str, version: str, headers: dict[str, str]) -> RemoteServer:
    return RemoteServer(url, name="cf", headers=headers, timeout=CALL_TIMEOUT,
                        protocol_version=version)


@pytest.fixture(scope="module")
def upstream_tools(contextforge_upstream: McpHttpServer) -> set[str]:
    """The tool names of the registered server, asked directly (not through ContextForge)."""
    with RemoteServer(contextforge_upstream.url, timeout=CALL_TIMEOUT) as server:
        return {tool.tool_name for tool in server.list_tools()}


@pytest.mark.parametrize("version", sorted(VERSIONS))
def test_list_tools_shows_the_registered_servers_tools_prefixed(
    contextforge: ContextForgePeer, version: str, upstream_tools: set[str],
    recording_proxy: Callable[..., RecordingProxy],
) -> None:
    proxy = recording_proxy(contextforge.url)
    with _connect(proxy.url, version, contextforge.headers) as server:
        tools = {tool.tool_name: tool for tool in server.list_tools()}
        assert server.protocol_version == VERSIONS[version]
        has_session = contextforge.mode == "stateful" and version != "auto"
        assert (server.session_id is not None) == has_session
    assert upstream_tools >= SDK_BASE_TOOLS
    assert set(tools) == {_listed_as(name) for name in upstream_tools} == contextforge.tools
    assert {"sdk-echo", "sdk-add", "sdk-crash"} <= set(tools)
    assert all(tool.server_name == "cf" for tool in tools.values())
    # The upstream's annotations pass through (add is read-only and idempotent, crash not).
    assert tools["sdk-add"].annotations.read_only_hint is True
    assert tools["sdk-add"].annotations.retry_safe is True
    assert tools["sdk-crash"].annotations.retry_safe is False
    for x, message in _messages(proxy):
        assert x.header("Authorization") == f"Bearer {contextforge.token}"
        assert not isinstance(message, list)  # never a batch
        assert x.status in (200, 202)  # no 406, no 4xx of any kind
        if message is not None and version == "auto":
            assert x.header("MCP-Protocol-Version") == "2026-07-28"


@pytest.mark.parametrize("version", sorted(VERSIONS))
def test_call_tool_reaches_the_registered_server_through_contextforge(
    contextforge: ContextForgePeer, version: str,
    recording_proxy: Callable[..., RecordingProxy],
) -> None:
    proxy = recording_proxy(contextforge.url)
    with _connect(proxy.url, version, contextforge.headers) as server:
        echoed = server.call_tool("sdk-echo", {"text": f"through {contextforge.mode}"})
        added = server.call_tool("sdk-add", {"a": 2, "b": 3})
        session = server.session_id
    assert echoed.text == f"through {contextforge.mode}"
    # The upstream's {"sum": 5} comes back as a float, in structuredContent and as indented
    # JSON text.
    assert added.structured == {"sum": 5.0}
    assert added.text == '{\n  "sum": 5.0\n}'
    calls = [(x, m) for x, m in _messages(proxy) if m and m.get("method") == "tools/call"]
    assert [m["params"]["name"] for _, m in calls] == ["sdk-echo", "sdk-add"]
    for x, _ in calls:
        assert x.status == 200 and x.header("Mcp-Session-Id") == session


@pytest.mark.parametrize("version", sorted(VERSIONS))
def test_the_session_headers_on_the_wire(
    contextforge: ContextForgePeer, version: str,
    recording_proxy: Callable[..., RecordingProxy],
) -> None:
    proxy = recording_proxy(contextforge.url)
    with _connect(proxy.url, version, contextforge.headers) as server:
        server.list_tools()
        server.call_tool("sdk-echo", {"text": "wire"})
        server.ping()
        session = server.session_id
    exchanges = proxy.requests
    posts = [x for x in exchanges if x.method == "POST"]
    gets = [x for x in exchanges if x.method == "GET"]
    first = json.loads(posts[0].body)
    if version == "auto":  # 2026-07-28: no initialize, no session, headers on every POST
        assert first["method"] == "server/discover" and session is None
        for x in posts:
            assert x.header("MCP-Protocol-Version") == "2026-07-28"
            assert x.header("Mcp-Method") == json.loads(x.body)["method"]
            assert x.header("Mcp-Session-Id") is None and x.status == 200
        assert gets == []
        return
    assert first["method"] == "initialize" and posts[0].header("Mcp-Session-Id") is None
    assert posts[0].response_header("Mcp-Session-Id") == session
    for x in exchanges[1:]:
        assert x.header("MCP-Protocol-Version") == V2025
        assert x.header("Mcp-Session-Id") == session
        assert x.status != 409  # never a second GET stream on a session
    if contextforge.mode == "stateful":
        # At most one GET listening stream; ContextForge answers it with SSE at once.
        assert len(gets) <= 1
        assert all(x.status == 200 and (x.response_header("Content-Type") or "").startswith(
            "text/event-stream") for x in gets)
    else:  # ContextForge's stateless mode refuses GET: 405, and the client takes no for it
        assert len(gets) <= 1 and all(x.status == 405 for x in gets)


@pytest.mark.parametrize("version", sorted(VERSIONS))
def test_close_ends_the_session_with_delete_only_when_there_is_one(
    contextforge: ContextForgePeer, version: str,
    recording_proxy: Callable[..., RecordingProxy],
) -> None:
    proxy = recording_proxy(contextforge.url)
    server = _connect(proxy.url, version, contextforge.headers).connect()
    session = server.session_id
    started = time.monotonic()
    server.close()
    server.close()  # idempotent: nothing more on the wire
    assert time.monotonic() - started < 5.0
    deletes = [x for x in proxy.requests if x.method == "DELETE"]
    if session is None:
        assert deletes == []
    else:  # stateful, 2025-11-25: the session ends, ContextForge says 200
        assert [(x.status, x.header("Mcp-Session-Id")) for x in deletes] == [(200, session)]
    assert not server.alive


@pytest.mark.parametrize("version", sorted(VERSIONS))
@pytest.mark.parametrize("credential", ["tampered", "none"])
def test_a_wrong_token_raises_authentication_error_without_the_token(
    contextforge: ContextForgePeer, version: str, credential: str,
    recording_proxy: Callable[..., RecordingProxy],
) -> None:
    # A JWT with a broken signature (the last characters changed), or no header at all.
    tampered = contextforge.token[:-6] + ("AAAAAA" if contextforge.token[-6:] != "AAAAAA"
                                          else "BBBBBB")
    headers = {"Authorization": f"Bearer {tampered}"} if credential == "tampered" else {}
    proxy = recording_proxy(contextforge.url)
    server = _connect(proxy.url, version, headers)
    started = time.monotonic()
    with pytest.raises(AuthenticationError) as caught:
        server.connect()
    elapsed = time.monotonic() - started
    server.close()
    assert elapsed < CALL_TIMEOUT
    text = f"{caught.value} {caught.value!r}"
    assert "401" in text or "authenticat" in text.lower()
    for secret in (tampered, contextforge.token, tampered[-40:], contextforge.token[-40:]):
        assert secret not in text
    first = proxy.requests[0]
    assert first.status == 401 and first.response_header("www-authenticate") == "Bearer"
    assert len([x for x in proxy.requests if x.status == 401]) == 1  # no retry loop


def test_invoke_tool_reaches_contextforge_by_name_through_the_client_pipeline(
    contextforge: ContextForgePeer, recording_proxy: Callable[..., RecordingProxy],
) -> None:
    proxy = recording_proxy(contextforge.url)
    events: list[Any] = []
    with sark_sync.GatewayClient(
            "http://127.0.0.1:9", audit=CallableSink(events.append),
            remote_servers={"cf": {"url": proxy.url, "headers": contextforge.headers,
                                   "timeout": CALL_TIMEOUT}}) as client:
        result = client.invoke_tool("cf", "sdk-add", {"a": 20, "b": 22})
        assert result.structured == {"sum": 42.0} and result.server == "cf"
        assert client.breaker_for("cf").name == "remote:cf"
    invocations = [e for e in events if e.event_type == "tool_invocation"]
    assert [(e.outcome, e.server, e.tool) for e in invocations] == [("success", "cf", "sdk-add")]
    assert contextforge.token not in repr(events)  # the bearer token is never audited
    assert all(x.header("Authorization") == f"Bearer {contextforge.token}"
               for x in proxy.requests)
