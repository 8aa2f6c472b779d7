"""A tool's result against its declared outputSchema, and the session's tool cache.

With jsonschema the structuredContent is validated (bounded against hostile schemas: deep,
huge, $ref loops, remote $ref, costly regexes); without it (the import replaced here) only
its presence is checked. The session lists its tools before calling one it never listed, and
again after notifications/tools/list_changed.
"""

from __future__ import annotations

import socket
import time
import urllib.request
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from support import wait_for

from sark_sync import ProtocolError, ToolInfo, ToolResult, TransportTimeout
from sark_sync.transports import _mcp_output, _mcp_schema
from sark_sync.transports._mcp_client import McpSession
from sark_sync.transports._mcp_output import check_output, jsonschema_available
from sark_sync.transports._mcp_schema import MAX_STEPS, safe_pattern
from sark_sync.transports._mcp_tools import CachedTool, ToolCache
from sark_sync.wire import jsonrpc

SCHEMA = {"type": "object", "properties": {"sum": {"type": "number"},
                                           "items": {"type": "array",
                                                     "items": {"type": "string"}}},
          "required": ["sum"]}


def cached(schema: Mapping[str, Any] | None = SCHEMA) -> CachedTool:
    info = ToolInfo(tool_name="add", server_name="calc", output_schema=schema)
    return CachedTool(info, {"name": "add"})


def result(structured: Mapping[str, Any] | None, *, is_error: bool = False) -> ToolResult:
    return ToolResult(content=(), structured=structured, is_error=is_error, server="calc",
                      tool="add")


def violation(tool: CachedTool, structured: Mapping[str, Any]) -> str:
    with pytest.raises(ProtocolError) as caught:
        check_output(result(structured), tool, kind="local MCP server")
    assert caught.value.server == "calc" and caught.value.tool == "add"
    return caught.value.message


@pytest.fixture
def no_jsonschema(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_mcp_output, "_import_jsonschema", lambda: None)


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Any attempt to reach the network fails the test (and is recorded)."""
    tried: list[str] = []

    def refuse(*args: Any, **kwargs: Any) -> Any:
        tried.append(repr(args[:1]))
        raise AssertionError("a schema check tried to reach the network")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    return tried


# -- with jsonschema ---------------------------------------------------------------------------

def test_jsonschema_is_installed_for_the_tests() -> None:
    assert jsonschema_available()


def test_a_conforming_result_passes_and_is_returned() -> None:
    answer = result({"sum": 3, "items": ["a"]})
    assert check_output(answer, cached(), kind="MCP server") is answer


@pytest.mark.parametrize(("tool", "answer"), [
    (None, result({"sum": "x"})),  # never listed: nothing to check against
    (cached(None), result(None)),  # no outputSchema
    (cached(), result(None, is_error=True)),  # a tool error need not conform
])
def test_what_is_not_checked(tool: CachedTool | None, answer: ToolResult) -> None:
    assert check_output(answer, tool, kind="MCP server") is answer


def test_a_missing_structured_content_is_a_protocol_error_naming_server_and_tool() -> None:
    with pytest.raises(ProtocolError, match=r"'calc'.*tool 'add' without structuredContent"):
        check_output(result(None), cached(), kind="local MCP server")


def test_a_violation_names_its_place_and_keyword_never_the_value() -> None:
    message = violation(cached(), {"sum": 1, "items": ["ok", "s3cr3t-token", {"x": 1}]})
    assert "$.items[2] fails 'type'" in message
    assert "s3cr3t" not in message and "'x'" not in message
    assert "required" in violation(cached(), {"items": []})
    assert "missing 'sum'" in violation(cached(), {"items": []})


def test_the_path_in_the_message_is_bounded() -> None:
    key = "k" * 500
    schema = {"type": "object", "additionalProperties": {
        "type": "object", "additionalProperties": {"type": "integer"}}}
    message = violation(cached(schema), {key: {key: "secret"}})
    assert len(message) < 400 and "secret" not in message and message.count("k") <= 200


def test_the_check_is_compiled_once_per_listed_tool(monkeypatch: pytest.MonkeyPatch) -> None:
    compiled: list[object] = []
    real = _mcp_schema.compile_check
    monkeypatch.setattr(_mcp_schema, "compile_check",
                        lambda schema, js: compiled.append(schema) or real(schema, js))
    tool = cached()
    for n in range(3):
        check_output(result({"sum": n}), tool, kind="MCP server")
    assert len(compiled) == 1


# -- hostile schemas: never a hang, never a fetch ----------------------------------------------

def nested(depth: int) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object"}
    for _ in range(depth):
        schema = {"type": "object", "properties": {"a": schema}}
    return schema


@pytest.mark.parametrize(("schema", "reason"), [
    (nested(200), "nested deeper than"),
    ({"type": "object", "properties": {f"p{i}": {"type": "string"} for i in range(6000)}},
     "more than 10000 values"),
    ({"$ref": "https://example.invalid/schema.json"}, "not local to the schema"),
    ({"properties": {"a": {"$ref": "other.json#/x"}}}, "not local to the schema"),
    ({"$dynamicRef": "http://example.invalid/x"}, "not local to the schema"),
    ({"$ref": 5}, "not local to the schema"),
])
def test_a_refused_schema_is_reported_without_fetching(
        schema: dict[str, Any], reason: str, no_network: list[str]) -> None:
    assert reason in violation(cached(schema), {"sum": 1})
    assert no_network == []


def test_a_remote_base_with_a_local_ref_fetches_nothing(no_network: list[str]) -> None:
    schema = {"$id": "http://example.invalid/root.json", "type": "object",
              "properties": {"a": {"$ref": "#/$defs/n"}}, "$defs": {"n": {"type": "number"}}}
    assert "$.a fails 'type'" in violation(cached(schema), {"a": "x"})
    assert check_output(result({"a": 1}), cached(schema), kind="MCP server")
    assert no_network == []


def test_a_ref_loop_ends(no_network: list[str]) -> None:
    for schema in ({"$ref": "#"}, {"$defs": {"a": {"$ref": "#/$defs/b"},
                                             "b": {"$ref": "#/$defs/a"}},
                                   "$ref": "#/$defs/a"}):
        started = time.monotonic()
        message = violation(cached(schema), {"sum": 1})
        assert "recursed too deeply" in message or "steps" in message
        assert time.monotonic() - started < 5


def test_branches_that_multiply_end_at_the_step_budget() -> None:
    defs = {f"d{i}": {"allOf": [{"$ref": f"#/$defs/d{i + 1}"}] * 4} for i in range(30)}
    defs["d30"] = {"type": "object"}
    message = violation(cached({"$defs": defs, "$ref": "#/$defs/d0"}), {"sum": 1})
    assert f"more than {MAX_STEPS} steps" in message


def test_a_catastrophic_pattern_is_not_evaluated() -> None:
    schema = {"type": "object", "properties": {"s": {"type": "string", "pattern": "^(a+)+$"}}}
    started = time.monotonic()
    check_output(result({"s": "a" * 40 + "!"}), cached(schema), kind="MCP server")
    assert time.monotonic() - started < 5


def test_a_simple_pattern_is_evaluated() -> None:
    schema = {"type": "object", "properties": {"id": {"type": "string", "pattern": "^[a-z]+$"}}}
    assert "$.id fails 'pattern'" in violation(cached(schema), {"id": "ABC"})


@pytest.mark.parametrize(("pattern", "safe"), [
    ("^[a-z]+$", True), ("^\\d{3}-\\d{4}$", True), ("[(]+x", True), ("^(ab)?c*$", True),
    ("^(a+)+$", False), ("(a|aa)*", False), ("(x*)*y", False), ("((a)+b)+", False),
    ("(a)\\1", False), ("(?P<x>a)(?P=x)", False), (".*.*.*=", False), ("a" * 600, False),
    (5, False),
])
def test_which_patterns_look_linear(pattern: object, safe: bool) -> None:
    assert safe_pattern(pattern) is safe


def test_an_invalid_schema_is_reported() -> None:
    assert "not a valid JSON Schema" in violation(cached({"type": 12}), {"sum": 1})


# -- without jsonschema -------------------------------------------------------------------------

@pytest.mark.usefixtures("no_jsonschema")
def test_without_jsonschema_only_presence_is_checked() -> None:
    assert not jsonschema_available()
    tool = cached()
    answer = result({"sum": "not a number"})
    assert check_output(answer, tool, kind="MCP server") is answer
    with pytest.raises(ProtocolError, match="without structuredContent"):
        check_output(result(None), tool, kind="MCP server")


@pytest.mark.usefixtures("no_jsonschema")
def test_without_jsonschema_a_hostile_schema_costs_nothing(no_network: list[str]) -> None:
    tool = cached({"$ref": "https://example.invalid/x"})
    assert check_output(result({"a": 1}), tool, kind="MCP server")
    assert no_network == []


def test_load_jsonschema_answers_none_when_the_import_fails(
        monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(name: str) -> Any:
        raise ImportError(name)
    monkeypatch.setattr(_mcp_schema.importlib, "import_module", fail)
    assert _mcp_schema.load_jsonschema() is None


# -- the session's tool cache ------------------------------------------------------------------

class Channel:
    """Answers tools/list from ``tools`` (changed by the test) and tools/call from ``call``."""

    def __init__(self, tools: list[dict[str, Any]], call: Any) -> None:
        self.tools, self.call = tools, call
        self.sent: list[str] = []
        self.alive = True
        self.list_error: BaseException | None = None
        self.call_error: BaseException | None = None

    def request(self, method: str, params: Mapping[str, Any] | None, timeout: float) -> Any:
        self.sent.append(method)
        if method == "tools/list":
            if self.list_error is not None:
                raise self.list_error
            return {"tools": list(self.tools)}
        if self.call_error is not None:
            raise self.call_error
        return self.call

    def notify(self, *args: Any, **kwargs: Any) -> None:
        pass

    def close(self) -> None:
        self.alive = False


class Session(McpSession):
    kind = "test server"

    def __init__(self, channel: Channel, **options: Any) -> None:
        super().__init__("fake", timeout=5.0, on_notification=options.get("on_notification"))
        self._channel = channel  # type: ignore[assignment]


ADD = {"name": "add", "outputSchema": SCHEMA, "annotations": {"readOnlyHint": True}}
GOOD = {"content": [], "structuredContent": {"sum": 3}}
BAD = {"content": [{"type": "text", "text": "3"}], "structuredContent": {"sum": "three"}}


def notify(session: McpSession, method: str) -> None:
    session._on_notification_message(jsonrpc.Notification(method, {}))


def test_the_first_call_lists_the_tools_once_and_checks_the_result() -> None:
    channel = Channel([ADD], BAD)
    session = Session(channel)
    with pytest.raises(ProtocolError, match=r"test server 'fake'.*tool 'add'.*\$\.sum fails"):
        session.call_tool("add", {})
    channel.call = GOOD
    assert session.call_tool("add", {}).structured == {"sum": 3}
    session.call_tool("other", {})  # not listed by the server: called unchecked, not relisted
    assert channel.sent == ["tools/list", "tools/call", "tools/call", "tools/call"]


def test_list_tools_fills_the_cache_and_list_changed_makes_it_stale() -> None:
    channel = Channel([], BAD)
    seen: list[str] = []
    session = Session(channel, on_notification=lambda method, params: seen.append(method))
    assert session.list_tools() == []
    assert session.tool_retry_safe("add") is None
    session.call_tool("add", {})  # unknown when listed: unchecked
    channel.tools = [ADD]
    notify(session, "notifications/tools/list_changed")
    with pytest.raises(ProtocolError):
        session.call_tool("add", {})
    assert session.tool_retry_safe("add") is True
    assert channel.sent == ["tools/list", "tools/call", "tools/list", "tools/call"]
    wait_for(lambda: seen, 5, what="on_notification to run")  # it may run on a thread
    assert seen == ["notifications/tools/list_changed"]  # still told
    session._callbacks.close()


def test_a_change_during_a_listing_keeps_the_cache_stale() -> None:
    cache = ToolCache("fake")
    generation = cache.generation()
    assert cache.notified("notifications/tools/list_changed")
    cache.store([ADD], generation)
    assert cache.stale and cache.get("add") is not None
    cache.store([ADD], cache.generation())
    assert not cache.stale


def test_resource_and_prompt_changes_are_counted() -> None:
    cache = ToolCache("fake")
    assert cache.notified("notifications/resources/list_changed")
    assert cache.notified("notifications/prompts/list_changed")
    assert not cache.notified("notifications/message")
    assert (cache.changes("resources"), cache.changes("prompts"), cache.stale) == (1, 1, True)


def test_a_malformed_tool_is_skipped_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    session = Session(Channel([ADD, {"name": "bad", "outputSchema": "x"}, {"x": 1}], GOOD))
    assert [t.name for t in session.list_tools()] == ["add"]
    assert "skipping malformed tool" in caplog.text


def test_a_server_that_cannot_list_is_called_unchecked(caplog: pytest.LogCaptureFixture) -> None:
    channel = Channel([ADD], BAD)
    channel.list_error = ProtocolError("no tools list")
    session = Session(channel)
    assert session.call_tool("add", {}).structured == {"sum": "three"}
    session.call_tool("add", {})
    assert channel.sent == ["tools/list", "tools/call", "tools/call"]
    assert "could not list the tools" in caplog.text


def test_a_timeout_reports_the_callers_timeout_not_what_was_left() -> None:
    channel = Channel([ADD], GOOD)
    channel.call_error = TransportTimeout(
        "test server 'fake' did not answer tools/call within 1.87s", server="fake")
    with pytest.raises(TransportTimeout, match="did not answer tools/call within 2s") as caught:
        Session(channel).call_tool("add", {}, timeout=2.0)
    assert caught.value.server == "fake"
    channel.list_error = TransportTimeout(
        "test server 'fake' did not answer tools/list within 2s", server="fake")
    with pytest.raises(TransportTimeout, match="did not answer tools/call within 3s"):
        Session(channel).call_tool("add", {}, timeout=3.0)


def test_concurrent_first_calls_share_one_listing() -> None:
    class Slow(Channel):
        def request(self, method: str, params: Mapping[str, Any] | None,
                    timeout: float) -> Any:
            if method == "tools/list":
                time.sleep(0.2)  # the other callers arrive while this one lists
            return super().request(method, params, timeout)

    channel = Slow([ADD], GOOD)
    session = Session(channel)
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda n: session.call_tool("add", {}), range(4)))
    assert [r.structured for r in results] == [{"sum": 3}] * 4
    assert channel.sent.count("tools/list") == 1 and channel.sent.count("tools/call") == 4


def test_waiting_for_another_callers_listing_is_bounded_by_the_timeout() -> None:
    channel = Channel([ADD], GOOD)
    session = Session(channel)
    assert session._tool_cache.refresh_lock.acquire()  # a listing that never ends
    try:
        started = time.monotonic()
        with pytest.raises(TransportTimeout, match=r"did not answer tools/call within 0\.2s"):
            session.call_tool("add", {}, timeout=0.2)
        assert time.monotonic() - started < 2
    finally:
        session._tool_cache.refresh_lock.release()
    assert channel.sent == []
