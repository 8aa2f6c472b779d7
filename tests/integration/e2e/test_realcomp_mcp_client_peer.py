"""The server asks the client: sampling, elicitation and roots against the official MCP server.

The peer (tests/realcomp/mcp_client_server.py, mcp 2.3.0) is reached over stdio, over
Streamable HTTP at 2025-11-25 (its questions are JSON-RPC requests of its own, on the call's
response stream) and at 2026-07-28 (they come inside an ``input_required`` result and the
client retries the call with the answers). The handlers, and what they see, are the same in
all three: that is the point.
"""

from __future__ import annotations

import threading
import time

import pytest
from mcp_peer import Recorder, released, session
from realcomp.client_fixtures import ClientPeer
from support import wait_for

import sark_sync
from sark_sync import (
    ElicitationRequest,
    ElicitationResult,
    Root,
    RootsRequest,
    RPCError,
    SamplingRequest,
    SamplingResult,
    ValidationError,
)

pytestmark = pytest.mark.realcomp

#: The error the official server answers a call that needs a capability the client lacks.
MISSING_CAPABILITY = -32021
#: What a failed or late handler answers (the official server then fails its call with it).
INTERNAL_ERROR = -32603
#: A handler's bound in the timeout test, and how late past it the call may fail.
HANDLER_TIMEOUT = 0.5
SLACK = 5.0


def test_elicitation_accept_decline_cancel(mcp_client_peer: ClientPeer) -> None:
    answers = [ElicitationResult.accept({"name": "Ada"}), ElicitationResult.decline(),
               ElicitationResult.cancel(), {"action": "accept", "content": {"name": "Bo"}}]
    seen: list[ElicitationRequest] = []

    def elicit(request: ElicitationRequest) -> ElicitationResult | dict[str, object]:
        seen.append(request)
        return answers[len(seen) - 1]

    with session(mcp_client_peer, elicitation=elicit) as server:
        said = [server.call_tool("ask_name").text for _ in answers]
    assert said == ["Hello, Ada", "declined", "cancelled", "Hello, Bo"]
    request = seen[0]
    assert (request.message, request.mode, request.server) == ("What is your name?", "form",
                                                               "peer")
    assert request.requested_schema["type"] == "object"
    assert request.requested_schema["properties"]["name"]["type"] == "string"
    assert request.requested_schema["required"] == ["name"]


def test_sampling_answers_with_the_clients_model(mcp_client_peer: ClientPeer) -> None:
    seen: list[SamplingRequest] = []

    def sample(request: SamplingRequest) -> SamplingResult:
        seen.append(request)
        return SamplingResult(f"{len(request.messages)} message(s) read", model="test-model",
                              stop_reason="endTurn")

    with session(mcp_client_peer, sampling=sample) as server:
        assert server.call_tool("summarize", {"text": "a long text"}).text \
            == "1 message(s) read (model test-model)"
    [request] = seen
    assert request.max_tokens == 100 and request.server == "peer"
    assert [(m.role, m.text) for m in request.messages] == [("user", "Summarize: a long text")]


def test_sampling_handler_may_return_a_dict(mcp_client_peer: ClientPeer) -> None:
    def sample(request: SamplingRequest) -> dict[str, object]:
        return {"role": "assistant", "content": {"type": "text", "text": "short"},
                "model": "dict-model"}

    with session(mcp_client_peer, sampling=sample) as server:
        assert server.call_tool("summarize", {"text": "x"}).text == "short (model dict-model)"


def test_static_roots(mcp_client_peer: ClientPeer) -> None:
    roots = ["file:///srv/data", Root("file:///home/ada/project", name="project")]
    with session(mcp_client_peer, roots=roots) as server:
        assert server.call_tool("show_roots").text.splitlines() \
            == ["file:///srv/data", "file:///home/ada/project"]


def test_roots_from_a_callable_are_asked_each_time(mcp_client_peer: ClientPeer) -> None:
    current = ["file:///first"]
    asked: list[RootsRequest] = []

    def roots(request: RootsRequest) -> list[str]:
        asked.append(request)
        return list(current)

    with session(mcp_client_peer, roots=roots) as server:
        assert server.call_tool("show_roots").text == "file:///first"
        current.append("file:///second")
        server.notify_roots_changed()
        assert server.call_tool("show_roots").text.splitlines() \
            == ["file:///first", "file:///second"]
    assert [r.server for r in asked] == ["peer", "peer"]


@pytest.mark.parametrize("mcp_client_peer", ["stdio", "http-2025"], indirect=True)
def test_notify_roots_changed_reaches_the_server(mcp_client_peer: ClientPeer) -> None:
    """At a handshake version the server hears ``notifications/roots/list_changed`` (at
    2026-07-28 there is nothing to send: the server asks for the roots in each request)."""
    with session(mcp_client_peer, roots=lambda request: ["file:///a"]) as server:
        assert server.call_tool("roots_changed").text == "0"
        server.notify_roots_changed()
        wait_for(lambda: server.call_tool("roots_changed").text == "1", SLACK, interval=0.05,
                 what="the server to hear the change")


def test_notify_roots_changed_needs_roots_that_can_change(mcp_client_peer: ClientPeer) -> None:
    with session(mcp_client_peer, roots=["file:///fixed"]) as server:
        with pytest.raises(ValidationError):
            server.notify_roots_changed()


def test_a_capability_not_declared_is_refused_by_the_server(mcp_client_peer: ClientPeer) -> None:
    """No handler: the client does not declare the capability, and the official server
    refuses the call itself (-32021, "Client did not declare ..."); the session goes on."""
    with session(mcp_client_peer) as server:
        for tool, arguments in (("ask_name", {}), ("summarize", {"text": "x"}),
                                ("show_roots", {})):
            with pytest.raises(RPCError) as caught:
                server.call_tool(tool, arguments)
            assert caught.value.code == MISSING_CAPABILITY
        assert server.call_tool("echo", {"text": "still here"}).text == "still here"


def test_a_handler_that_raises_fails_the_call_not_the_session(
        mcp_client_peer: ClientPeer) -> None:
    def elicit(request: ElicitationRequest) -> ElicitationResult:
        raise RuntimeError("the user interface is gone")

    with session(mcp_client_peer, elicitation=elicit) as server:
        with pytest.raises(RPCError) as caught:
            server.call_tool("ask_name")
        assert caught.value.code == INTERNAL_ERROR
        assert "RuntimeError: the user interface is gone" in str(caught.value)
        assert server.call_tool("echo", {"text": "after"}).text == "after"


def test_a_handler_past_its_timeout_fails_the_call_in_time(mcp_client_peer: ClientPeer) -> None:
    with released(threading.Event()) as never:
        def elicit(request: ElicitationRequest) -> ElicitationResult:
            never.wait(60)
            return ElicitationResult.decline()

        with session(mcp_client_peer, elicitation=elicit,
                     handler_timeout=HANDLER_TIMEOUT) as server:
            started = time.monotonic()
            with pytest.raises(RPCError) as caught:
                server.call_tool("ask_name")
            assert time.monotonic() - started < HANDLER_TIMEOUT + SLACK
            assert caught.value.code == INTERNAL_ERROR
            assert f"did not answer within {HANDLER_TIMEOUT:g}s" in str(caught.value)
            never.set()
            assert server.call_tool("echo", {"text": "after"}).text == "after"


def test_handlers_run_off_the_reader_and_may_call_the_same_server(
        mcp_client_peer: ClientPeer) -> None:
    """A handler may take its time and call the server that asked (the reader thread must
    stay free to deliver that answer)."""
    holder: dict[str, sark_sync.transports.LocalServer | sark_sync.transports.RemoteServer] = {}
    threads = Recorder()

    def elicit(request: ElicitationRequest) -> ElicitationResult:
        threads(threading.current_thread().name)
        name = holder["server"].call_tool("echo", {"text": "Nested"}).text
        return ElicitationResult.accept({"name": name})

    with session(mcp_client_peer, elicitation=elicit) as server:
        holder["server"] = server
        assert server.call_tool("ask_name").text == "Hello, Nested"
    assert threads.items == ["sark-sync-mcp-peer-handler"]
