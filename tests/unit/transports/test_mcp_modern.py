"""MCP 2026-07-28 pieces without a socket: the ``Mcp-Name`` header encoding (the base64
sentinel), the ``_meta`` envelope and routing headers, ``resultType``, a modern error body,
and the negotiation's decisions over a scripted channel (which answer leads to 2026, which to
``initialize`` at 2025-11-25, which propagates)."""

from __future__ import annotations

import base64
import time
from collections.abc import Mapping
from typing import Any

import pytest

from sark_sync import (
    APIError,
    AuthenticationError,
    BadRequestError,
    ConnectionFailed,
    NotFoundError,
    ProtocolError,
    RPCError,
    ServerError,
    TransportTimeout,
)
from sark_sync.transports._mcp_client import McpSession
from sark_sync.transports._mcp_modern import (
    MODERN_VERSION,
    ParamHeaders,
    check_result,
    complete,
    decode_header_value,
    encode_header_value,
    envelope,
    error_of_answer,
    header_map,
    negotiate,
    prepare,
    relearn,
    routing_headers,
)

# -- the Mcp-Name encoding ------------------------------------------------------------------


@pytest.mark.parametrize("value", ["echo", "get_weather", "a b", "file:///tmp/x.txt", "",
                                   "=?base64", "?=", "tool=?x?="])
def test_plain_printable_ascii_is_sent_verbatim(value: str) -> None:
    assert encode_header_value(value) == value


@pytest.mark.parametrize(("value", "why"), [
    ("héllo", "non-ASCII"),
    ("日本語ツール", "non-Latin"),
    (" echo", "leading space"),
    ("echo ", "trailing space"),
    ("\techo", "leading tab"),
    ("a\r\nInjected: yes", "CR LF (header injection)"),
    ("a\x7fb", "DEL"),
    ("a\x00b", "NUL"),
    ("=?base64?ZWNobw==?=", "a plain value that looks like the sentinel"),
])
def test_other_values_travel_in_the_sentinel_and_decode_back(value: str, why: str) -> None:
    encoded = encode_header_value(value)
    assert encoded == "=?base64?" + base64.b64encode(value.encode("utf-8")).decode() + "?=", why
    assert encoded.isascii() and encoded.isprintable()
    assert decode_header_value(encoded) == value


def test_the_spec_example_and_the_exact_encoding() -> None:
    assert encode_header_value("=?base64?literal?=") == "=?base64?PT9iYXNlNjQ/bGl0ZXJhbD89?="
    assert encode_header_value("héllo wörld") == "=?base64?aMOpbGxvIHfDtnJsZA==?="


@pytest.mark.parametrize("value", ["=?base64?not base64!?=", "=?base64?ZWNobw=?=",
                                   "=?base64?ZWNobx==?=", "=?base64?/w==?="])
def test_a_malformed_sentinel_decodes_to_none(value: str) -> None:
    # bad alphabet, bad padding, non-canonical trailing bits, bytes that are not UTF-8
    assert decode_header_value(value) is None


def test_a_plain_value_decodes_to_itself() -> None:
    assert decode_header_value("echo") == "echo"


# -- envelope, headers, results --------------------------------------------------------------


def test_the_envelope_adds_the_three_meta_keys_and_keeps_the_callers() -> None:
    params = {"name": "slow", "arguments": {}, "_meta": {"progressToken": "sark-1"}}
    wrapped = envelope(params, MODERN_VERSION)
    meta = wrapped["_meta"]
    assert meta["progressToken"] == "sark-1"
    assert meta["io.modelcontextprotocol/protocolVersion"] == MODERN_VERSION
    assert meta["io.modelcontextprotocol/clientCapabilities"] == {}
    assert meta["io.modelcontextprotocol/clientInfo"]["name"] == "sark-sync"
    assert (wrapped["name"], wrapped["arguments"]) == ("slow", {})
    assert params["_meta"] == {"progressToken": "sark-1"}  # the caller's dict is untouched
    assert set(envelope(None, MODERN_VERSION)) == {"_meta"}


@pytest.mark.parametrize(("method", "params", "name"), [
    ("tools/call", {"name": "echo"}, "echo"),
    ("tools/call", {"name": "héllo"}, "=?base64?aMOpbGxv?="),
    ("prompts/get", {"name": "greet"}, "greet"),
    ("resources/read", {"uri": "file:///a b"}, "file:///a b"),
    ("tools/list", {"cursor": "x"}, None),
    ("server/discover", None, None),
    ("tools/call", {"name": 3}, None),
])
def test_routing_headers(method: str, params: Mapping[str, Any] | None,
                         name: str | None) -> None:
    headers = routing_headers(method, params, MODERN_VERSION)
    assert headers["MCP-Protocol-Version"] == MODERN_VERSION
    assert headers["Mcp-Method"] == method
    assert headers.get("Mcp-Name") == name


def test_prepare_leaves_a_2025_message_alone() -> None:
    params = {"name": "echo"}
    assert prepare("tools/call", params, None, ParamHeaders()) == (params, {})
    wrapped, headers = prepare("tools/call", params, MODERN_VERSION, ParamHeaders())
    assert wrapped is not None and "_meta" in wrapped and headers["Mcp-Name"] == "echo"


@pytest.mark.parametrize("result", [{"content": []}, {"resultType": "complete"}, None, []])
def test_a_complete_result_passes(result: Any) -> None:
    assert check_result(result, "tools/call", "srv") is result


@pytest.mark.parametrize("method", ["tools/call", "prompts/get", "resources/read"])
def test_input_required_passes_for_a_request_that_may_ask_when_the_session_answers(
        method: str) -> None:
    result = {"resultType": "input_required", "requestState": "s"}
    assert check_result(result, method, "srv", asking=True) is result


@pytest.mark.parametrize(("method", "asking"), [
    ("tools/call", False), ("tools/list", True), ("server/discover", True)])
def test_input_required_is_refused_where_it_may_not_ask(method: str, asking: bool) -> None:
    with pytest.raises(ProtocolError, match=rf"'srv' answered {method} with resultType "
                                            r"'input_required', which sark_sync does not"):
        check_result({"resultType": "input_required"}, method, "srv", asking)


def test_any_other_result_type_is_a_protocol_error() -> None:
    with pytest.raises(ProtocolError, match=r"'srv' answered tools/call with resultType "
                                            r"'later', which sark_sync does not accept"):
        check_result({"resultType": "later"}, "tools/call", "srv", asking=True)


def test_a_json_rpc_error_body_becomes_an_rpc_error_with_its_status() -> None:
    raw = (b'{"jsonrpc":"2.0","id":1,"error":{"code":-32022,"message":"Unsupported",'
           b'"data":{"supported":["2026-07-28"],"requested":"2027-01-01"}}}')
    error = error_of_answer(raw, 400, "srv")
    assert isinstance(error, RPCError)
    assert (error.code, error.status_code, error.rpc_message) == (-32022, 400, "Unsupported")
    assert error.data == {"supported": ["2026-07-28"], "requested": "2027-01-01"}
    assert error_of_answer(b"Not Found", 404, "srv") is None
    assert error_of_answer(b'{"jsonrpc":"2.0","id":1,"result":{}}', 400, "srv") is None


# -- Mcp-Param-* headers -------------------------------------------------------------------


def schema(**properties: Any) -> dict[str, Any]:
    return {"type": "object", "properties": properties}


REGIONAL = {"name": "regional", "inputSchema": schema(
    region={"type": "string", "x-mcp-header": "Region"}, text={"type": "string"},
    options={"type": "object", "properties": {
        "dry": {"type": "boolean", "x-mcp-header": "Dry-Run"},
        "limit": {"type": "integer", "x-mcp-header": "Limit"}}},
    anything={"anyOf": [{"type": "string", "x-mcp-header": "Ignored"}]})}


def test_header_map_follows_properties_chains_only() -> None:
    assert header_map(REGIONAL["inputSchema"]) == {
        ("region",): "Region", ("options", "dry"): "Dry-Run", ("options", "limit"): "Limit"}
    assert header_map(None) == {} and header_map({"type": "object"}) == {}


@pytest.mark.parametrize(("properties", "problem"), [
    ({"a": {"type": "string", "x-mcp-header": "Bad Token"}}, "is not an HTTP header token"),
    ({"a": {"type": "string", "x-mcp-header": ""}}, "is not an HTTP header token"),
    ({"a": {"type": "string", "x-mcp-header": 7}}, "is not an HTTP header token"),
    ({"a": {"type": "number", "x-mcp-header": "A"}}, "only a string, integer or boolean"),
    ({"a": {"type": "string", "x-mcp-header": "A"},
      "b": {"type": "string", "x-mcp-header": "a"}}, "declared twice"),
])
def test_an_invalid_declaration_is_refused(properties: dict[str, Any], problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        header_map(schema(**properties))


def test_headers_render_the_arguments_of_a_listed_tool() -> None:
    tools = ParamHeaders()
    page = {"tools": [REGIONAL]}
    assert tools.learn(page, "srv") is page
    assert tools.known("regional") and not tools.known("echo")
    arguments = {"region": "Zürich", "text": "t", "options": {"dry": False, "limit": 10}}
    assert tools.headers({"name": "regional", "arguments": arguments}) == {
        "Mcp-Param-Region": "=?base64?WsO8cmljaA==?=", "Mcp-Param-Dry-Run": "false",
        "Mcp-Param-Limit": "10"}
    # absent, null or non-scalar arguments get no header
    assert tools.headers({"name": "regional", "arguments": {
        "region": None, "options": {"limit": [1]}}}) == {}
    assert tools.headers({"name": "echo", "arguments": {"region": "x"}}) == {}
    _, headers = prepare("tools/call", {"name": "regional", "arguments": {"region": "eu"}},
                         MODERN_VERSION, tools)
    assert headers["Mcp-Param-Region"] == "eu" and headers["Mcp-Name"] == "regional"


def test_a_tool_with_an_invalid_declaration_is_left_out_with_a_warning(
        caplog: pytest.LogCaptureFixture) -> None:
    bad = {"name": "bad", "inputSchema": schema(a={"type": "number", "x-mcp-header": "A"})}
    page = {"tools": [bad, REGIONAL], "nextCursor": "c"}
    kept = complete(page, "tools/list", "srv", ParamHeaders())
    assert kept == {"tools": [REGIONAL], "nextCursor": "c"}
    assert "excluding tool 'bad' of srv: invalid x-mcp-header declaration" in caplog.text


def test_relearn_lists_every_page_until_the_tool_is_known() -> None:
    tools = ParamHeaders()
    pages = [{"tools": [], "nextCursor": "p2"}, {"tools": [REGIONAL], "nextCursor": "p3"}]
    asked: list[Any] = []

    def request(method: str, params: Mapping[str, Any] | None, timeout: float) -> Any:
        asked.append((method, params))
        return complete(pages.pop(0), method, "srv", tools)

    mismatch = rpc(-32020, status=400)
    call = {"name": "regional", "arguments": {"region": "eu"}}
    deadline = time.monotonic() + 5
    assert relearn(request, tools, mismatch, call, {"Mcp-Name": "regional"}, deadline)
    assert asked == [("tools/list", None), ("tools/list", {"cursor": "p2"})]
    # Known now: no second listing. Another thread that sent the call before the tool was
    # learned sends it again; a call refused with the right headers is not.
    assert relearn(request, tools, mismatch, call, {}, deadline)
    assert not relearn(request, tools, mismatch, call, {"Mcp-Param-Region": "eu"}, deadline)
    assert not relearn(request, ParamHeaders(), rpc(-32602), call, {}, deadline)
    assert len(asked) == 2


# -- negotiation -----------------------------------------------------------------------------


class ScriptedChannel:
    """Answers ``server/discover`` and ``initialize`` from a script (a value, or an exception
    to raise) and records each request with the era the channel was in."""

    def __init__(self, discover: Any, initialize: Any = None) -> None:
        self.answers = {"server/discover": discover, "initialize": initialize, "ping": {}}
        self.modern_version: str | None = None
        self.sent: list[tuple[str | None, str, Any]] = []
        self.alive = True

    def request(self, method: str, params: Mapping[str, Any] | None, timeout: float) -> Any:
        self.sent.append((self.modern_version, method, params))
        answer = self.answers[method]
        if isinstance(answer, list):
            answer = answer.pop(0)
        if isinstance(answer, BaseException):
            raise answer
        return answer

    def notify(self, method: str, params: Mapping[str, Any] | None = None,
               timeout: float = 1.0) -> None:
        self.sent.append((self.modern_version, method, params))


class Session(McpSession):
    def __init__(self, channel: ScriptedChannel) -> None:
        super().__init__("srv", timeout=5.0, on_notification=None)
        self._channel = channel  # type: ignore[assignment]


DISCOVERED = {"supportedVersions": [MODERN_VERSION], "capabilities": {"tools": {}},
              "resultType": "complete", "instructions": "hi",
              "_meta": {"io.modelcontextprotocol/serverInfo": {"name": "new", "version": "2"}}}
INITIALIZED = {"protocolVersion": "2025-11-25", "capabilities": {}, "serverInfo": {"name": "old"}}


def connect(channel: ScriptedChannel, wanted: str = "auto") -> Session:
    session = Session(channel)
    negotiate(session, channel, wanted, timeout=5.0, server="srv")
    return session


def rpc(code: int, data: Any = None, status: int | None = None) -> RPCError:
    return RPCError("refused", code=code, data=data, status_code=status)


def test_a_discover_result_offering_2026_is_adopted_without_initialize() -> None:
    channel = ScriptedChannel(DISCOVERED)
    session = connect(channel)
    assert [(era, method) for era, method, _ in channel.sent] == [
        (MODERN_VERSION, "server/discover")]
    assert channel.modern_version == MODERN_VERSION
    assert session.protocol_version == MODERN_VERSION
    assert session.server_info == {"name": "new", "version": "2"}
    assert (session.capabilities, session.instructions) == ({"tools": {}}, "hi")
    session.ping()
    assert channel.sent[-1][1] == "server/discover"  # 2026 has no ping


@pytest.mark.parametrize("refusal", [
    rpc(-32601), rpc(-32600, status=400), rpc(-32022, {"supported": ["2025-11-25"]}),
    BadRequestError("Missing session ID", status_code=400),
    NotFoundError("not found", status_code=404), APIError("method", status_code=405),
], ids=["method-not-found", "invalid-request-400", "unsupported-2025-only", "400", "404", "405"])
def test_a_refused_probe_falls_back_to_initialize_at_2025_11_25(refusal: Exception) -> None:
    channel = ScriptedChannel(refusal, INITIALIZED)
    session = connect(channel)
    assert [(era, method) for era, method, _ in channel.sent] == [
        (MODERN_VERSION, "server/discover"), (None, "initialize"),
        (None, "notifications/initialized")]
    assert channel.sent[1][2]["protocolVersion"] == "2025-11-25"
    assert channel.modern_version is None
    assert session.protocol_version == "2025-11-25" and session.server_info == {"name": "old"}
    session.ping()
    assert channel.sent[-1][1] == "ping"


@pytest.mark.parametrize("result", [
    {"supportedVersions": ["2025-11-25"]}, {"supportedVersions": "2026-07-28"}, {}, ["x"]])
def test_a_discover_result_without_a_modern_version_falls_back(result: Any) -> None:
    channel = ScriptedChannel(result, INITIALIZED)
    assert connect(channel).protocol_version == "2025-11-25"
    assert [method for _, method, _ in channel.sent][1] == "initialize"


@pytest.mark.parametrize("failure", [
    ConnectionFailed("refused"), TransportTimeout("slow"),
    AuthenticationError("401", status_code=401), ServerError("boom", status_code=500),
    ProtocolError("garbage"),
    rpc(-32022, {"supported": ["2027-01-01"]}),  # a modern server with nothing in common
], ids=["network", "timeout", "401", "500", "malformed", "modern-only-disjoint"])
def test_what_says_nothing_about_versions_propagates_without_initialize(
        failure: Exception) -> None:
    channel = ScriptedChannel(failure, INITIALIZED)
    with pytest.raises(type(failure)) as caught:
        connect(channel)
    assert caught.value is failure
    assert [method for _, method, _ in channel.sent] == ["server/discover"]


def test_the_fallback_initialize_failure_keeps_its_status() -> None:
    channel = ScriptedChannel(NotFoundError("nf", status_code=404),
                              APIError("not allowed", status_code=405))
    with pytest.raises(APIError) as caught:
        connect(channel)
    assert caught.value.status_code == 405
    assert [method for _, method, _ in channel.sent] == ["server/discover", "initialize"]


def test_forcing_2026_never_falls_back() -> None:
    refused = rpc(-32601)
    channel = ScriptedChannel(refused, INITIALIZED)
    with pytest.raises(RPCError) as caught:
        connect(channel, MODERN_VERSION)
    assert caught.value is refused
    channel = ScriptedChannel(BadRequestError("x", status_code=400), INITIALIZED)
    with pytest.raises(BadRequestError):
        connect(channel, MODERN_VERSION)
    channel = ScriptedChannel({"supportedVersions": ["2025-11-25"]}, INITIALIZED)
    with pytest.raises(ProtocolError, match="'srv' does not offer protocol version 2026-07-28"):
        connect(channel, MODERN_VERSION)
    assert [method for _, method, _ in channel.sent] == ["server/discover"]


def test_a_handshake_version_skips_the_probe_and_is_offered_again_on_renewal() -> None:
    channel = ScriptedChannel(DISCOVERED, dict(INITIALIZED, protocolVersion="2025-06-18"))
    session = connect(channel, "2025-06-18")
    assert [method for _, method, _ in channel.sent] == ["initialize",
                                                          "notifications/initialized"]
    assert channel.sent[0][2]["protocolVersion"] == "2025-06-18"
    assert session.protocol_version == "2025-06-18"
    session.handshake(5.0)  # what a renewal after a lost session does
    assert channel.sent[2][2]["protocolVersion"] == "2025-06-18"
