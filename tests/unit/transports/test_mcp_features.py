"""Resources, prompts and completion on the MCP session (``_mcp_features``), over an in-memory
channel that answers like a server: the capability rule (nothing sent when undeclared), the
exact requests, pagination and its bounds, one deadline across pages, hostile answers."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, Callable, Optional

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sark_sync import ProtocolError, ValidationError
from sark_sync._exceptions import CapabilityNotSupported
from sark_sync._mcp_models import Completion, Prompt, Resource, ResourceTemplate
from sark_sync.transports import _mcp_features
from sark_sync.transports._mcp_client import McpSession
from sark_sync.transports._mcp_modern import routing_headers

ALL = {"resources": {}, "prompts": {}, "completions": {}, "tools": {}}
Answer = Callable[[Optional[Mapping[str, Any]]], Any]


class FakeChannel:
    """Answers ``method`` with ``answers[method](params)`` and records each request with the
    timeout it was given."""

    def __init__(self, answers: Mapping[str, Answer]) -> None:
        self.answers = answers
        self.sent: list[tuple[str, Any]] = []
        self.timeouts: list[float] = []

    def request(self, method: str, params: Mapping[str, Any] | None, timeout: float) -> Any:
        self.sent.append((method, params))
        self.timeouts.append(timeout)
        return self.answers[method](params)


def session(answers: Mapping[str, Answer] | None = None, *, capabilities: Any = None,
            version: str | None = "2025-11-25") -> tuple[McpSession, FakeChannel]:
    server = McpSession("fake", timeout=5.0, on_notification=None)
    channel = FakeChannel(answers or {})
    server._channel = channel  # type: ignore[assignment]
    server.protocol_version = version
    server.capabilities = ALL if capabilities is None else capabilities
    return server, channel


def pages(key: str, *pages_: list[Any]) -> Answer:
    """Page i of ``pages_`` for cursor ``"p<i>"``; the last page has no nextCursor."""
    def answer(params: Mapping[str, Any] | None) -> Any:
        index = int(params["cursor"][1:]) if params else 0
        page: dict[str, Any] = {key: pages_[index]}
        if index + 1 < len(pages_):
            page["nextCursor"] = f"p{index + 1}"
        return page
    return answer


CALLS: dict[str, tuple[str, Callable[[McpSession], Any]]] = {
    "list_resources": ("resources", lambda s: s.list_resources()),
    "iter_resources": ("resources", lambda s: s.iter_resources()),
    "list_resource_templates": ("resources", lambda s: s.list_resource_templates()),
    "read_resource": ("resources", lambda s: s.read_resource("demo://text")),
    "list_prompts": ("prompts", lambda s: s.list_prompts()),
    "iter_prompts": ("prompts", lambda s: s.iter_prompts()),
    "get_prompt": ("prompts", lambda s: s.get_prompt("greet", {"name": "Ada"})),
    "complete": ("completions", lambda s: s.complete(
        {"type": "ref/prompt", "name": "greet"}, "style", "f")),
}


@pytest.mark.parametrize("call", sorted(CALLS))
def test_an_undeclared_capability_raises_before_anything_is_sent(call: str) -> None:
    capability, run = CALLS[call]
    server, channel = session(capabilities={k: {} for k in ALL if k != capability})
    with pytest.raises(CapabilityNotSupported) as caught:
        run(server)
    assert channel.sent == []
    assert (caught.value.capability, caught.value.server) == (capability, "fake")
    assert caught.value.method is not None and caught.value.method in str(caught.value)


def test_a_session_not_connected_yet_lets_the_channel_refuse() -> None:
    server, channel = session({"resources/read": lambda p: {"contents": []}},
                              capabilities={}, version=None)
    assert server.read_resource("demo://text").contents == ()
    assert channel.sent == [("resources/read", {"uri": "demo://text"})]


def test_resources_are_listed_across_pages_in_order() -> None:
    server, channel = session({"resources/list": pages(
        "resources", [{"uri": "a:1", "name": "one"}], [], [{"uri": "a:2", "name": "two"}])})
    assert server.list_resources() == [Resource(uri="a:1", name="one"),
                                       Resource(uri="a:2", name="two")]
    assert channel.sent == [("resources/list", None), ("resources/list", {"cursor": "p1"}),
                            ("resources/list", {"cursor": "p2"})]


def test_iter_resources_asks_for_a_page_only_when_the_iteration_reaches_it() -> None:
    server, channel = session({"resources/list": pages(
        "resources", [{"uri": "a:1", "name": "one"}], [{"uri": "a:2", "name": "two"}])})
    resources = server.iter_resources()
    assert channel.sent == []
    assert next(resources).uri == "a:1"
    assert len(channel.sent) == 1
    assert [r.uri for r in resources] == ["a:2"]
    assert len(channel.sent) == 2


def test_templates_and_prompts_are_listed_across_pages() -> None:
    server, channel = session({
        "resources/templates/list": pages("resourceTemplates",
                                          [{"uriTemplate": "note://{name}", "name": "note"}],
                                          [{"uriTemplate": "f:///{p}", "name": "file"}]),
        "prompts/list": pages("prompts", [{"name": "greet", "arguments": [{"name": "name"}]}],
                              [{"name": "plain"}]),
    })
    assert [t.uri_template for t in server.list_resource_templates()] == ["note://{name}",
                                                                          "f:///{p}"]
    assert [p.name for p in server.list_prompts()] == ["greet", "plain"]
    assert [p.name for p in server.iter_prompts()] == ["greet", "plain"]
    assert [m for m, _ in channel.sent] == ["resources/templates/list"] * 2 + ["prompts/list"] * 4


def test_a_malformed_item_is_skipped_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    server, _ = session({"resources/list": pages(
        "resources", [{"uri": 7, "name": "bad"}, "junk", {"uri": "a:1", "name": "good"}])})
    with caplog.at_level(logging.WARNING, logger="sark_sync.mcp"):
        assert [r.name for r in server.list_resources()] == ["good"]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2
    assert all("resources/list from fake" in w for w in warnings)


@pytest.mark.parametrize("page", [None, [], "x", {"resources": {}}, {"resources": None},
                                  {"nextCursor": "p1"}])
def test_a_page_without_its_list_is_a_protocol_error(page: Any) -> None:
    server, _ = session({"resources/list": lambda p: page})
    with pytest.raises(ProtocolError, match="without a resources list"):
        server.list_resources()


def test_a_cursor_that_comes_back_is_a_protocol_error_not_a_loop() -> None:
    server, channel = session({"prompts/list": lambda p: {
        "prompts": [], "nextCursor": "A" if not p or p["cursor"] == "B" else "B"}})
    with pytest.raises(ProtocolError, match="cursor it had sent before"):
        server.list_prompts()
    assert [params for _, params in channel.sent] == [None, {"cursor": "A"}, {"cursor": "B"}]


def test_pages_are_followed_at_most_max_list_pages(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_mcp_features, "MAX_LIST_PAGES", 5)
    counter = iter(range(10**6))
    server, channel = session({"resources/list": lambda p: {
        "resources": [], "nextCursor": f"c{next(counter)}"}})
    with pytest.raises(ProtocolError, match="more than 5 resources/list pages"):
        server.list_resources()
    assert len(channel.sent) == 5


def test_a_huge_page_is_read_once_and_its_items_kept() -> None:
    items = [{"uri": f"a:{i}", "name": str(i)} for i in range(20_000)]
    server, _ = session({"resources/list": lambda p: {"resources": items}})
    assert len(server.list_resources()) == 20_000


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


def test_one_deadline_bounds_every_page(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = Clock()
    monkeypatch.setattr(_mcp_features, "time", clock)
    answer = pages("resources", [], [], [])

    def slow(params: Mapping[str, Any] | None) -> Any:
        clock.now += 4.0
        return answer(params)

    server, channel = session({"resources/list": slow})
    server.list_resources(timeout=10.0)
    assert channel.timeouts == [10.0, 6.0, 2.0]


def test_the_deadline_left_never_goes_below_zero(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = Clock()
    monkeypatch.setattr(_mcp_features, "time", clock)
    answer = pages("prompts", [], [])

    def slow(params: Mapping[str, Any] | None) -> Any:
        clock.now += 7.0
        return answer(params)

    server, channel = session({"prompts/list": slow})
    server.list_prompts(timeout=5.0)
    assert channel.timeouts == [5.0, 0.0]


def test_the_deadline_of_a_lazy_iteration_runs_from_the_call(
        monkeypatch: pytest.MonkeyPatch) -> None:
    clock = Clock()
    monkeypatch.setattr(_mcp_features, "time", clock)
    server, channel = session({"resources/list": pages("resources", [])})
    resources = server.iter_resources(timeout=10.0)
    clock.now += 3.0
    assert list(resources) == []
    assert channel.timeouts == [7.0]


@pytest.mark.parametrize("timeout", [-1.0, "5", float("nan")])
def test_a_bad_timeout_is_refused_before_anything_is_sent(timeout: Any) -> None:
    server, channel = session()
    with pytest.raises(ValidationError):
        server.read_resource("demo://text", timeout=timeout)
    assert channel.sent == []


def test_read_resource_sends_the_uri_and_returns_its_contents() -> None:
    server, channel = session({"resources/read": lambda p: {"contents": [
        {"uri": p["uri"], "mimeType": "text/plain", "text": "hello"},
        {"uri": p["uri"], "blob": "AAEC"}]}})
    result = server.read_resource("demo://text", timeout=3.0)
    assert channel.sent == [("resources/read", {"uri": "demo://text"})]
    assert channel.timeouts == [3.0]
    assert (result.text, result.contents[1].blob) == ("hello", b"\0\1\2")


@pytest.mark.parametrize("answer", [None, {}, {"contents": [{"uri": "u", "blob": "###"}]},
                                    {"contents": [{"uri": "u"}]}, {"contents": "text"}])
def test_a_malformed_read_result_is_a_protocol_error(answer: Any) -> None:
    server, _ = session({"resources/read": lambda p: answer})
    with pytest.raises(ProtocolError, match="malformed resources/read result from 'fake'"):
        server.read_resource("demo://text")


@pytest.mark.parametrize("uri", ["", None, 7, b"demo://text"])
def test_a_bad_uri_is_refused_before_anything_is_sent(uri: Any) -> None:
    server, channel = session()
    with pytest.raises(ValidationError, match="uri"):
        server.read_resource(uri)
    assert channel.sent == []


def test_get_prompt_sends_its_name_and_string_arguments() -> None:
    server, channel = session({"prompts/get": lambda p: {"description": "d", "messages": [
        {"role": "user", "content": {"type": "text", "text": f"Hi {p['arguments']['name']}"}}]}})
    result = server.get_prompt("greet", {"name": "Ada"})
    assert channel.sent == [("prompts/get", {"name": "greet", "arguments": {"name": "Ada"}})]
    assert [m.text for m in result.messages] == ["Hi Ada"]


def test_get_prompt_without_arguments_sends_none() -> None:
    server, channel = session({"prompts/get": lambda p: {"messages": []}})
    assert server.get_prompt("plain").messages == ()
    assert channel.sent == [("prompts/get", {"name": "plain"})]


@pytest.mark.parametrize(("name", "arguments"), [
    ("", None), (None, None), ("greet", {"n": 1}), ("greet", {1: "x"}), ("greet", ["a"]),
    ("greet", {"n": None}), ("greet", "name=Ada"),
])
def test_bad_prompt_arguments_are_refused_before_anything_is_sent(name: Any,
                                                                  arguments: Any) -> None:
    server, channel = session()
    with pytest.raises(ValidationError):
        server.get_prompt(name, arguments)
    assert channel.sent == []


def test_a_malformed_prompt_result_is_a_protocol_error() -> None:
    server, _ = session({"prompts/get": lambda p: {"messages": [{"role": "robot"}]}})
    with pytest.raises(ProtocolError, match="malformed prompts/get result"):
        server.get_prompt("greet")


COMPLETION = {"completion": {"values": ["formal"], "total": 1, "hasMore": False}}


@pytest.mark.parametrize(("ref", "sent"), [
    (Prompt(name="greet"), {"type": "ref/prompt", "name": "greet"}),
    (ResourceTemplate(uri_template="note://{name}", name="note"),
     {"type": "ref/resource", "uri": "note://{name}"}),
    ({"type": "ref/prompt", "name": "greet", "title": "x"}, {"type": "ref/prompt",
                                                             "name": "greet"}),
    ({"type": "ref/resource", "uri": "note://{name}"}, {"type": "ref/resource",
                                                        "uri": "note://{name}"}),
])
def test_complete_sends_the_reference_and_argument(ref: Any, sent: Any) -> None:
    server, channel = session({"completion/complete": lambda p: COMPLETION})
    assert server.complete(ref, "style", "fo") == Completion(values=("formal",), total=1)
    assert channel.sent == [("completion/complete", {
        "ref": sent, "argument": {"name": "style", "value": "fo"}})]


@pytest.mark.parametrize(("ref", "argument", "value", "context"), [
    ({"type": "ref/tool", "name": "x"}, "a", "v", None), ({"type": "ref/prompt"}, "a", "v", None),
    ({"type": "ref/resource", "name": "x"}, "a", "v", None), ("greet", "a", "v", None),
    (Resource(uri="u", name="n"), "a", "v", None), ({"type": "ref/prompt", "name": ""}, "a", "v",
                                                   None),
    (Prompt(name="greet"), "", "v", None), (Prompt(name="greet"), "a", 1, None),
    (Prompt(name="greet"), "a", "v", {"name": 1}), (Prompt(name="greet"), "a", "v", ["x"]),
])
def test_bad_completion_arguments_are_refused_before_anything_is_sent(
        ref: Any, argument: Any, value: Any, context: Any) -> None:
    server, channel = session()
    with pytest.raises(ValidationError):
        server.complete(ref, argument, value, context)
    assert channel.sent == []


@pytest.mark.parametrize(("version", "sent"), [
    ("2026-07-28", True), ("2025-11-25", True), ("2025-06-18", True), ("2025-03-26", False),
])
def test_the_context_is_sent_from_2025_06_18_on(version: str, sent: bool) -> None:
    server, channel = session({"completion/complete": lambda p: COMPLETION}, version=version)
    server.complete(Prompt(name="greet"), "style", "f", {"name": "Ada"})
    params = channel.sent[0][1]
    assert ("context" in params) is sent
    if sent:
        assert params["context"] == {"arguments": {"name": "Ada"}}


@pytest.mark.parametrize("declared", ["prompts", "resources"])
def test_at_2024_11_05_completion_goes_to_a_server_with_prompts_or_resources(
        declared: str) -> None:
    server, channel = session({"completion/complete": lambda p: COMPLETION},
                              capabilities={declared: {}}, version="2024-11-05")
    assert server.complete(Prompt(name="greet"), "style", "f").values == ("formal",)
    assert len(channel.sent) == 1


@pytest.mark.parametrize(("version", "capabilities"), [
    ("2024-11-05", {"tools": {}}), ("2025-03-26", {"prompts": {}, "resources": {}}),
])
def test_completion_needs_its_capability_from_2025_03_26_on(version: str,
                                                            capabilities: Any) -> None:
    server, channel = session(capabilities=capabilities, version=version)
    with pytest.raises(CapabilityNotSupported) as caught:
        server.complete(Prompt(name="greet"), "style", "f")
    assert (caught.value.capability, caught.value.method) == ("completions",
                                                              "completion/complete")
    assert channel.sent == []


@pytest.mark.parametrize("answer", [None, {"completion": {"values": [1]}}, {"values": ["a"]}])
def test_a_malformed_completion_is_a_protocol_error(answer: Any) -> None:
    server, _ = session({"completion/complete": lambda p: answer})
    with pytest.raises(ProtocolError, match="malformed completion/complete result"):
        server.complete(Prompt(name="greet"), "style", "f")


@pytest.mark.parametrize("value", [None, False])
def test_a_capability_declared_null_or_false_is_not_declared(value: Any) -> None:
    server, channel = session(capabilities={"resources": value})
    with pytest.raises(CapabilityNotSupported):
        server.list_resources()
    assert channel.sent == []


@pytest.mark.parametrize(("method", "params", "name"), [
    ("resources/read", {"uri": "note://ünïcode"}, "=?base64?bm90ZTovL8O8bsOvY29kZQ==?="),
    ("resources/read", {"uri": "demo://text"}, "demo://text"),
    ("prompts/get", {"name": "greet", "arguments": {"name": "Ada"}}, "greet"),
])
def test_at_2026_07_28_mcp_name_is_the_uri_or_the_prompt_name(method: str, params: Any,
                                                             name: str) -> None:
    headers = routing_headers(method, params, "2026-07-28")
    assert (headers["Mcp-Method"], headers["Mcp-Name"]) == (method, name)


@pytest.mark.parametrize("method", ["resources/list", "resources/templates/list",
                                    "prompts/list", "completion/complete"])
def test_at_2026_07_28_other_methods_carry_no_mcp_name(method: str) -> None:
    assert "Mcp-Name" not in routing_headers(method, {"cursor": "x"}, "2026-07-28")


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=6),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.sampled_from(["resources", "resourceTemplates", "prompts", "contents",
                                       "messages", "completion", "values", "nextCursor", "uri",
                                       "name", "uriTemplate", "text", "blob", "role", "content",
                                       "type"]), children, max_size=5),
    max_leaves=16)
OPERATIONS: list[tuple[str, Callable[[McpSession], Any]]] = [
    ("resources/list", lambda s: s.list_resources()),
    ("resources/templates/list", lambda s: s.list_resource_templates()),
    ("resources/read", lambda s: s.read_resource("u:1")),
    ("prompts/list", lambda s: s.list_prompts()),
    ("prompts/get", lambda s: s.get_prompt("p")),
    ("completion/complete", lambda s: s.complete({"type": "ref/prompt", "name": "p"}, "a", "")),
]


@settings(max_examples=300, deadline=None)
@given(answers=st.lists(JSON, min_size=1, max_size=4), operation=st.sampled_from(OPERATIONS))
def test_any_answer_is_a_value_or_a_protocol_error(answers: list[Any],
                                                   operation: tuple[str, Any]) -> None:
    method, run = operation
    replies = iter(answers)
    server, _ = session({method: lambda p: next(replies, {})})
    try:
        run(server)
    except ProtocolError:
        pass
