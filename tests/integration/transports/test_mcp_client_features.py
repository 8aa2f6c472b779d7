"""Resources, prompts and completion against real servers.

The official SDK server (tests/realcomp/mcp_client_server.py, mcp 2.3.0) is reached three ways
with the same assertions, on its own values: over stdio, over Streamable HTTP at 2025-11-25
and at 2026-07-28 (no session; the ``_meta`` envelope and the ``Mcp-Name`` header, which that
server checks against the body: a URI that needs the base64 form proves it). Its
``--tools-only`` twin declares no resources, prompts or completions. A scripted stdio server
(stdio_servers/features.py) shows what the official one cannot: that nothing was sent for an
undeclared capability, pages and their loops, the 2024-11-05 completion rule, a bad blob.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable, Union

import pytest

from sark_sync import ProtocolError, RPCError
from sark_sync._exceptions import CapabilityNotSupported
from sark_sync._mcp_models import Completion, PromptArgument, Resource
from sark_sync.transports import LocalServer, RemoteServer

#: Bound of one request (the servers answer in milliseconds; slack for a busy CI).
TIMEOUT = 20.0
FEATURES = Path(__file__).resolve().parent.parent / "stdio_servers" / "features.py"
PEERS = ["stdio", "http-2025", "http-2026"]
VERSIONS = {"http-2025": "2025-11-25", "http-2026": "2026-07-28"}

Session = Union[LocalServer, RemoteServer]


def connect(kind: str, command: list[str], url: str) -> Session:
    if kind == "stdio":
        return LocalServer(command, name="peer", timeout=TIMEOUT)
    return RemoteServer(url, name="peer", timeout=TIMEOUT, protocol_version=VERSIONS[kind])


@pytest.fixture(params=PEERS)
def official(request: pytest.FixtureRequest, mcp_client_stdio_command: list[str],
             mcp_client_http_server: Any) -> Iterator[Session]:
    """A started session with the official server, every feature on (both fixtures are
    requested whatever the kind: the session-scoped HTTP server must not start in a test)."""
    with connect(request.param, mcp_client_stdio_command, mcp_client_http_server.url) as server:
        yield server


@pytest.fixture(params=PEERS)
def tools_only(request: pytest.FixtureRequest, mcp_client_tools_only_command: list[str],
               mcp_client_tools_only_http_server: Any) -> Iterator[Session]:
    """A started session with the official server that declares tools alone."""
    with connect(request.param, mcp_client_tools_only_command,
                 mcp_client_tools_only_http_server.url) as server:
        yield server


@pytest.mark.realcomp
def test_resources_and_templates_are_listed(official: Session) -> None:
    resources = {r.uri: r for r in official.list_resources()}
    assert sorted(resources) == ["demo://binary", "demo://counter", "demo://text"]
    text = resources["demo://text"]
    assert (text.name, text.title, text.description, text.mime_type) == (
        "text", "Demo text", "A short text.", "text/plain")
    assert resources["demo://binary"].mime_type == "application/octet-stream"
    assert [r.uri for r in official.iter_resources()] == [r for r in resources]
    [template] = official.list_resource_templates()
    assert (template.uri_template, template.name, template.title, template.mime_type) == (
        "note://{name}", "note", "Note", "text/plain")


@pytest.mark.realcomp
def test_text_binary_and_templated_resources_are_read(official: Session) -> None:
    text = official.read_resource("demo://text")
    assert text.text == "hello from the demo server"
    assert (text.contents[0].uri, text.contents[0].mime_type) == ("demo://text", "text/plain")
    [binary] = official.read_resource("demo://binary").contents
    assert (binary.blob, binary.text) == (bytes(range(256)), None)
    assert official.read_resource("note://alpha").text == "note alpha"
    # Not plain ASCII: at 2026-07-28 Mcp-Name carries it base64-encoded, and the server
    # refuses a request whose header does not decode to the body's uri.
    assert official.read_resource("note://ünïcödé name").text == "note ünïcödé name"


@pytest.mark.realcomp
def test_an_unknown_resource_is_the_servers_error(official: Session) -> None:
    with pytest.raises(RPCError, match="Unknown resource: demo://nope") as caught:
        official.read_resource("demo://nope")
    assert caught.value.code == -32602


@pytest.mark.realcomp
def test_prompts_are_listed_and_filled_in(official: Session) -> None:
    prompts = {p.name: p for p in official.list_prompts()}
    assert sorted(prompts) == ["greet", "plain"]
    assert prompts["greet"].description == "Greet someone in a style."
    assert prompts["greet"].arguments == (PromptArgument(name="name", required=True),
                                          PromptArgument(name="style", required=False))
    assert prompts["plain"].arguments == ()
    result = official.get_prompt("greet", {"name": "Ada", "style": "formal"})
    assert [(m.role, m.text) for m in result.messages] == [("user",
                                                            "Greet Ada in a formal way.")]
    assert official.get_prompt("plain").messages[0].text == "Say hello."


@pytest.mark.realcomp
def test_a_missing_required_prompt_argument_is_the_servers_error(official: Session) -> None:
    with pytest.raises(RPCError):
        official.get_prompt("greet")


@pytest.mark.realcomp
def test_completion_for_a_template_and_a_prompt_with_context(official: Session) -> None:
    [template] = official.list_resource_templates()
    greet = next(p for p in official.list_prompts() if p.name == "greet")
    assert official.complete(template, "name", "al") == Completion(values=("alpha", "alpine"),
                                                                   total=2)
    assert official.complete({"type": "ref/resource", "uri": "note://{name}"}, "name",
                             "b").values == ("beta",)
    # The server adds "<name>-style" only when the request's context names the name.
    assert official.complete(greet, "style", "", {"name": "Ada"}).values == (
        "formal", "casual", "pirate", "Ada-style")
    assert official.complete({"type": "ref/prompt", "name": "greet"}, "style",
                             "p").values == ("pirate",)


CALLS: dict[str, tuple[str, Callable[[Session], Any]]] = {
    "list_resources": ("resources", lambda s: s.list_resources()),
    "list_resource_templates": ("resources", lambda s: s.list_resource_templates()),
    "read_resource": ("resources", lambda s: s.read_resource("demo://text")),
    "list_prompts": ("prompts", lambda s: s.list_prompts()),
    "get_prompt": ("prompts", lambda s: s.get_prompt("greet", {"name": "Ada"})),
    "complete": ("completions", lambda s: s.complete(
        {"type": "ref/prompt", "name": "greet"}, "style", "f")),
}


@pytest.mark.realcomp
def test_the_tools_only_server_is_asked_nothing_it_did_not_declare(tools_only: Session) -> None:
    for capability, call in CALLS.values():
        with pytest.raises(CapabilityNotSupported) as caught:
            call(tools_only)
        assert (caught.value.capability, caught.value.server) == (capability, "peer")
    assert tools_only.call_tool("echo", {"text": "still fine"}).text == "still fine"


# -- the scripted server ----------------------------------------------------------------------


def scripted(*options: str) -> LocalServer:
    return LocalServer([sys.executable, str(FEATURES), *options], name="scripted",
                       timeout=TIMEOUT)


def received(server: LocalServer) -> list[str]:
    """The methods the scripted server received before this question, but those of tools (the
    session may list the tools before it calls one)."""
    return [m for m in server.call_tool("received").text.splitlines()
            if not m.startswith("tools/")]


def test_nothing_is_sent_for_an_undeclared_capability() -> None:
    with scripted("--capabilities", "") as server:
        for call in CALLS.values():
            with pytest.raises(CapabilityNotSupported):
                call[1](server)
        with pytest.raises(CapabilityNotSupported):
            server.iter_prompts()
        assert received(server) == ["initialize", "notifications/initialized"]


def test_listings_follow_every_page_and_skip_a_malformed_item(
        caplog: pytest.LogCaptureFixture) -> None:
    with scripted("--pages", "3") as server, caplog.at_level(logging.WARNING, "sark_sync.mcp"):
        assert [r.name for r in server.list_resources()] == ["p0a", "p0b", "p1a", "p1b",
                                                             "p2a", "p2b"]
        assert [p.name for p in server.list_prompts()] == ["first", "second"]
        assert received(server)[2:] == ["resources/list"] * 3 + ["prompts/list"] * 2
    assert ["resources/list from scripted" in r.getMessage() for r in caplog.records
            if r.levelno == logging.WARNING] == [True]


def test_iter_resources_reads_the_next_page_only_when_reached() -> None:
    with scripted("--pages", "3") as server:
        resources = server.iter_resources()
        assert next(resources) == Resource(uri="res://p0/a", name="p0a")
        assert received(server).count("resources/list") == 1
        assert [r.uri for r in resources][-1] == "res://p2/b"


def test_a_looping_cursor_is_a_protocol_error_and_the_session_goes_on() -> None:
    with scripted("--loop") as server:
        with pytest.raises(ProtocolError, match="cursor it had sent before"):
            server.list_prompts()
        assert received(server)[2:] == ["prompts/list"] * 2


def test_a_blob_that_is_not_base64_is_a_protocol_error() -> None:
    with scripted() as server:
        assert server.read_resource("res://binary").contents[0].blob == b"\0\1\2"
        with pytest.raises(ProtocolError, match="'blob' is not valid base64"):
            server.read_resource("res://bad-blob")


def test_prompt_arguments_and_completion_context_reach_the_server() -> None:
    with scripted() as server:
        assert server.get_prompt("second", {"who": "Ada"}).messages[0].text \
            == 'second {"who": "Ada"}'
        assert server.complete({"type": "ref/prompt", "name": "second"}, "who", "A",
                               {"x": "y"}).values == ("A1", "A2", "context")


def test_at_2024_11_05_completion_goes_to_a_prompts_server_without_context() -> None:
    with scripted("--capabilities", "prompts", "--version", "2024-11-05") as server:
        assert server.protocol_version == "2024-11-05"
        assert server.complete({"type": "ref/prompt", "name": "first"}, "a", "v",
                               {"x": "y"}).values == ("v1", "v2")


def test_at_2025_03_26_completion_needs_the_completions_capability() -> None:
    with scripted("--capabilities", "prompts,resources", "--version", "2025-03-26") as server:
        with pytest.raises(CapabilityNotSupported) as caught:
            server.complete({"type": "ref/prompt", "name": "first"}, "a", "v")
        assert caught.value.capability == "completions"
        assert "completion/complete" not in received(server)
