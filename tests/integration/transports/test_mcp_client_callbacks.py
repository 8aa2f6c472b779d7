"""The server asks the client (sampling, elicitation, roots) over stdio, against a scripted peer.

stdio_servers/asking.py sends whatever request a test names and answers the tool call with
exactly what the client answered, so each test sees the wire: the result, or the JSON-RPC
error's code and message. The official SDK server is exercised the same way in
tests/integration/e2e/test_realcomp_mcp_client_peer.py (stdio, HTTP 2025 and 2026).
"""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from support import child_env

import sark_sync
from sark_sync import ValidationError
from sark_sync._mcp_requests import (
    ElicitationRequest,
    ElicitationResult,
    Root,
    RootsRequest,
    SamplingRequest,
    SamplingResult,
)

ASKING = Path(__file__).resolve().parent.parent / "stdio_servers" / "asking.py"
FORM = {"message": "Who are you?",
        "requestedSchema": {"type": "object", "properties": {"name": {"type": "string"}}}}
SAMPLE = {"messages": [{"role": "user", "content": {"type": "text", "text": "Hi"}}],
          "maxTokens": 10}


def local(**options: Any) -> sark_sync.LocalServer:
    return sark_sync.LocalServer([sys.executable, str(ASKING)], name="asker", env=child_env(),
                                 timeout=20.0, **options)


def ask(server: sark_sync.LocalServer, method: str, params: Any = None) -> Any:
    """What the client answered the server's ``method`` request: {"result"} or {"error"}."""
    return json.loads(server.call_tool("ask", {"method": method, "params": params}).text)


def test_an_accepted_elicitation_reaches_the_server_and_the_handler_saw_the_request() -> None:
    seen: list[ElicitationRequest] = []

    def elicit(request: ElicitationRequest) -> ElicitationResult:
        seen.append(request)
        return ElicitationResult.accept({"name": "Ada"})

    with local(elicitation=elicit) as server:
        assert ask(server, "elicitation/create", FORM) == {
            "result": {"action": "accept", "content": {"name": "Ada"}}}
    assert [(r.message, r.mode, r.server) for r in seen] == [("Who are you?", "form", "asker")]
    assert seen[0].requested_schema == FORM["requestedSchema"]


@pytest.mark.parametrize(("answer", "wire"), [
    (ElicitationResult.decline(), {"action": "decline"}),
    (ElicitationResult.cancel(), {"action": "cancel"}),
    ({"action": "accept", "content": {"name": "Bo", "tags": ["a"]}},
     {"action": "accept", "content": {"name": "Bo", "tags": ["a"]}}),
])
def test_decline_cancel_and_a_plain_dict_answer_travel_as_given(answer: Any, wire: Any) -> None:
    with local(elicitation=lambda request: answer) as server:
        assert ask(server, "elicitation/create", FORM) == {"result": wire}


def test_sampling_gets_the_typed_request_and_its_result_travels_in_the_spec_shape() -> None:
    seen: list[SamplingRequest] = []

    def sample(request: SamplingRequest) -> SamplingResult:
        seen.append(request)
        return SamplingResult("Hello!", model="test-model", stop_reason="endTurn")

    with local(sampling=sample) as server:
        assert ask(server, "sampling/createMessage", dict(SAMPLE, systemPrompt="Be brief")) == {
            "result": {"role": "assistant", "content": {"type": "text", "text": "Hello!"},
                       "model": "test-model", "stopReason": "endTurn"}}
    assert [(m.role, m.text) for m in seen[0].messages] == [("user", "Hi")]
    assert (seen[0].max_tokens, seen[0].system_prompt) == (10, "Be brief")


def test_static_and_callable_roots() -> None:
    with local(roots=["file:///work", Root("file:///data", name="Data")]) as server:
        assert ask(server, "roots/list") == {"result": {"roots": [
            {"uri": "file:///work"}, {"uri": "file:///data", "name": "Data"}]}}
    calls: list[RootsRequest] = []

    def roots(request: RootsRequest) -> list[str]:
        calls.append(request)
        return [f"file:///r{len(calls)}"]

    with local(roots=roots) as server:
        assert ask(server, "roots/list") == {"result": {"roots": [{"uri": "file:///r1"}]}}
        assert ask(server, "roots/list") == {"result": {"roots": [{"uri": "file:///r2"}]}}
    assert calls == [RootsRequest("asker"), RootsRequest("asker")]


def test_only_the_capabilities_of_the_handlers_given_are_declared() -> None:
    def declared(**options: Any) -> Any:
        with local(**options) as server:
            return json.loads(server.call_tool("capabilities").text)

    assert declared() == {}
    assert declared(sampling=lambda r: {}, elicitation=lambda r: {}, roots=lambda r: []) == {
        "sampling": {}, "elicitation": {"form": {}}, "roots": {"listChanged": True}}
    assert declared(roots=["file:///fixed"]) == {"roots": {}}


def test_elicitation_declares_no_modes_before_2025_11_25() -> None:
    with sark_sync.LocalServer([sys.executable, str(ASKING)], env=child_env(),
                               elicitation=lambda r: {}) as server:
        server.handshake(10.0, "2025-06-18")
        assert json.loads(server.call_tool("capabilities").text) == {"elicitation": {}}


def test_a_request_without_a_handler_is_method_not_found() -> None:
    with local(sampling=lambda r: {"content": "x", "model": "m"}) as server:
        for method in ("elicitation/create", "roots/list", "other/thing"):
            assert ask(server, method, {})["error"]["code"] == -32601


def test_malformed_params_are_invalid_params_and_the_handler_is_not_called() -> None:
    called = threading.Event()
    with local(elicitation=lambda r: called.set(), sampling=lambda r: called.set()) as server:
        error = ask(server, "elicitation/create", {"requestedSchema": {}})["error"]
        assert error["code"] == -32602 and "message must be a string" in error["message"]
        error = ask(server, "sampling/createMessage", {"messages": [], "maxTokens": "ten"})
        assert error["error"]["code"] == -32602
    assert not called.is_set()


def test_a_raising_handler_is_an_internal_error_and_the_session_goes_on() -> None:
    def elicit(request: ElicitationRequest) -> ElicitationResult:
        raise RuntimeError("no user at the keyboard")

    with local(elicitation=elicit) as server:
        assert ask(server, "elicitation/create", FORM) == {"error": {
            "code": -32603, "message": "the elicitation/create handler failed: RuntimeError: "
                                       "no user at the keyboard"}}
        assert server.call_tool("echo", {"text": "still here"}).text == "still here"


def test_a_raised_rpc_error_keeps_its_code() -> None:
    def sample(request: SamplingRequest) -> SamplingResult:
        raise sark_sync.RPCError("refused", code=-1, rpc_message="User rejected sampling")

    with local(sampling=sample) as server:
        assert ask(server, "sampling/createMessage", SAMPLE) == {
            "error": {"code": -1, "message": "User rejected sampling"}}


def test_an_invalid_handler_result_is_an_internal_error() -> None:
    with local(elicitation=lambda r: {"action": "maybe"}) as server:
        error = ask(server, "elicitation/create", FORM)["error"]
    assert error["code"] == -32603
    assert error["message"].startswith("the elicitation/create handler returned an invalid")


def test_a_handler_runs_off_the_reader_and_may_call_the_same_server() -> None:
    threads: list[str] = []
    holder: list[sark_sync.LocalServer] = []

    def elicit(request: ElicitationRequest) -> ElicitationResult:
        threads.append(threading.current_thread().name)
        echoed = holder[0].call_tool("echo", {"text": "Grace"}, timeout=10.0).text
        return ElicitationResult.accept({"name": echoed})

    with local(elicitation=elicit) as server:
        holder.append(server)
        assert ask(server, "elicitation/create", FORM) == {
            "result": {"action": "accept", "content": {"name": "Grace"}}}
    assert threads == ["sark-sync-mcp-asker-handler"]


def test_a_late_handler_answers_an_error_in_time_and_its_result_is_dropped() -> None:
    release, finished = threading.Event(), threading.Event()

    def elicit(request: ElicitationRequest) -> ElicitationResult:
        release.wait(10.0)
        finished.set()
        return ElicitationResult.accept({"name": "late"})

    try:
        with local(elicitation=elicit, handler_timeout=0.3) as server:
            started = time.monotonic()
            error = ask(server, "elicitation/create", FORM)["error"]
            assert time.monotonic() - started < 5.0
            assert error == {"code": -32603, "message": "the elicitation/create handler did "
                                                        "not answer within 0.3s"}
            release.set()
            assert finished.wait(5.0)
            assert server.call_tool("echo", {"text": "fine"}).text == "fine"
    finally:
        release.set()


def test_notify_roots_changed_reaches_the_server_only_for_roots_that_may_change() -> None:
    with local(roots=lambda request: []) as server:
        server.notify_roots_changed()
        assert server.call_tool("notifications").text.splitlines() == [
            "notifications/initialized", "notifications/roots/list_changed"]
    with local(roots=["file:///fixed"]) as server, pytest.raises(
            ValidationError, match="notify_roots_changed needs roots= to be a callable; the "
                                   "session with 'asker' has fixed roots"):
        server.notify_roots_changed()


def test_wrong_handler_types_are_refused_when_the_session_is_made() -> None:
    with pytest.raises(ValidationError, match="elicitation must be a callable or None, not str"):
        local(elicitation="yes")
    with pytest.raises(ValidationError, match="roots: a root's uri must be a str starting "
                                              "with file://"):
        local(roots=["/tmp"])
    with pytest.raises(ValidationError, match="handler_timeout must be > 0 seconds"):
        local(handler_timeout=0)


def test_gateway_client_passes_the_handlers_to_local_servers() -> None:
    def elicit(request: ElicitationRequest) -> ElicitationResult:
        return ElicitationResult.accept({"name": request.server})

    command = [sys.executable, str(ASKING)]
    arguments = {"method": "elicitation/create", "params": FORM}
    with sark_sync.GatewayClient("http://127.0.0.1:9", local_servers={
            "spec": {"command": command, "env": child_env(), "elicitation": elicit}}) as client:
        assert json.loads(client.invoke_tool("spec", "ask", arguments).text) == {
            "result": {"action": "accept", "content": {"name": "spec"}}}
        client.connect_local_server(command, env=child_env(), name="direct", elicitation=elicit)
        assert json.loads(client.invoke_tool("direct", "ask", arguments).text) == {
            "result": {"action": "accept", "content": {"name": "direct"}}}
        with pytest.raises(ValidationError, match="connect_local_server got unexpected "
                                                  "option\\(s\\) elicitor"):
            client.connect_local_server(command, elicitor=elicit)
    with pytest.raises(sark_sync.ConfigurationError, match=r"local_servers\['x'\]\.handler_"
                                                           r"timeout must be a number"):
        sark_sync.GatewayClient("http://127.0.0.1:9", local_servers={
            "x": {"command": command, "handler_timeout": "soon"}})
