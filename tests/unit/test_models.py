"""Lenient, forward-compatible parsing of gateway models, and safe reprs."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import pytest

from sark_sync import (
    Health,
    ServerInfo,
    ToolAnnotations,
    ToolCall,
    ToolExecutionError,
    ToolInfo,
    ToolResult,
)

SERVER = {
    "server_id": "id-1",
    "server_name": "postgres-mcp",
    "server_url": "http://10.0.0.1:9000",
    "transport": "stdio",
    "sensitivity_level": "high",
    "authorized_teams": ["data", "ops"],
    "health_status": "healthy",
    "tools_count": 4,
    "created_at": "2024-01-02T03:04:05Z",
    "updated_at": "2024-01-02T03:04:05.123456+02:00",
}

TOOL = {
    "tool_name": "execute_query",
    "server_name": "postgres-mcp",
    "description": "Run SQL",
    "sensitivity_level": "critical",
    "input_schema": {"type": "object", "properties": {"query": {"type": "string"}}},
    "annotations": {"title": "Query", "readOnlyHint": True, "destructiveHint": False,
                    "idempotentHint": True, "openWorldHint": False},
    "sensitive_params": ["password"],
}


# -- Health ----------------------------------------------------------------------------------------


def test_health_parses_all_fields() -> None:
    health = Health.from_dict({"status": "healthy", "version": "1.2", "servers": 3})
    assert health == Health(status="healthy", version="1.2", servers=3)
    assert health.healthy is True


def test_health_ignores_unknown_fields_and_defaults_missing_ones() -> None:
    health = Health.from_dict({"status": "unhealthy", "uptime": 12, "extra": {"a": 1}})
    assert health == Health(status="unhealthy", version=None, servers=0)
    assert health.healthy is False


@pytest.mark.parametrize(
    ("data", "field"),
    [({}, "status"), ({"status": 1}, "status"), ({"status": "ok", "servers": "3"}, "servers"),
     ({"status": "ok", "servers": True}, "servers"), ({"status": "ok", "version": 2}, "version")],
)
def test_health_wrong_type_or_missing_field_names_the_field(data: dict[str, Any], field: str
                                                            ) -> None:
    with pytest.raises(ValueError, match=f"'{field}'"):
        Health.from_dict(data)


@pytest.mark.parametrize("data", [None, [], "healthy", 3])
def test_models_reject_a_non_object(data: object) -> None:
    for model in (Health, ServerInfo, ToolInfo):
        with pytest.raises(ValueError, match="must be a JSON object"):
            model.from_dict(data)  # type: ignore[attr-defined]


# -- ServerInfo ------------------------------------------------------------------------------------


def test_server_info_parses_every_field() -> None:
    info = ServerInfo.from_dict(SERVER)
    assert info == ServerInfo(
        server_name="postgres-mcp", server_id="id-1", server_url="http://10.0.0.1:9000",
        transport="stdio", sensitivity_level="high", authorized_teams=("data", "ops"),
        health_status="healthy", tools_count=4,
        created_at=datetime(2024, 1, 2, 3, 4, 5, tzinfo=timezone.utc),
        updated_at=datetime.fromisoformat("2024-01-02T03:04:05.123456+02:00"),
    )
    assert info.name == "postgres-mcp"


def test_server_info_ignores_unknown_fields() -> None:
    assert ServerInfo.from_dict({**SERVER, "future_field": [1, 2], "owner": {"x": 1}}) == \
        ServerInfo.from_dict(SERVER)


def test_server_info_fills_defaults_for_missing_optional_fields() -> None:
    assert ServerInfo.from_dict({"server_name": "a"}) == ServerInfo(
        server_name="a", server_id=None, server_url=None, transport="http",
        sensitivity_level="medium", authorized_teams=(), health_status="unknown", tools_count=0,
        created_at=None, updated_at=None,
    )


def test_server_info_null_optional_fields_take_defaults() -> None:
    info = ServerInfo.from_dict({"server_name": "a", "transport": None, "tools_count": None,
                                 "authorized_teams": None, "created_at": None})
    assert (info.transport, info.tools_count, info.authorized_teams, info.created_at) == (
        "http", 0, (), None)


def test_server_info_timestamp_with_z_is_utc() -> None:
    info = ServerInfo.from_dict({"server_name": "a", "created_at": "2024-05-06T07:08:09Z"})
    assert info.created_at == datetime(2024, 5, 6, 7, 8, 9, tzinfo=timezone.utc)
    assert info.created_at.utcoffset().total_seconds() == 0  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-05-06T07:08:09.123Z", datetime(2024, 5, 6, 7, 8, 9, 123000, tzinfo=timezone.utc)),
        ("2024-05-06T07:08:09.5Z", datetime(2024, 5, 6, 7, 8, 9, 500000, tzinfo=timezone.utc)),
        # Go's time.RFC3339Nano: nanoseconds, truncated to microseconds.
        ("2024-05-06T07:08:09.123456789Z",
         datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=timezone.utc)),
    ],
)
def test_server_info_rfc3339_fractional_seconds_of_any_precision(text: str, expected: datetime
                                                                 ) -> None:
    assert ServerInfo.from_dict({"server_name": "a", "created_at": text}).created_at == expected


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({}, "server_name"),
        ({"server_name": None}, "server_name"),
        ({"server_name": 7}, "server_name"),
        ({"server_name": "a", "tools_count": "4"}, "tools_count"),
        ({"server_name": "a", "tools_count": 4.0}, "tools_count"),
        ({"server_name": "a", "authorized_teams": "ops"}, "authorized_teams"),
        ({"server_name": "a", "authorized_teams": ["ops", 1]}, "authorized_teams"),
        ({"server_name": "a", "created_at": "yesterday"}, "created_at"),
        ({"server_name": "a", "updated_at": 1700000000}, "updated_at"),
        ({"server_name": "a", "transport": ["http"]}, "transport"),
    ],
)
def test_server_info_wrong_type_or_missing_field_names_the_field(data: dict[str, Any], field: str
                                                                 ) -> None:
    with pytest.raises(ValueError, match=f"'{field}'"):
        ServerInfo.from_dict(data)


# -- ToolInfo and ToolAnnotations ------------------------------------------------------------------


def test_tool_info_parses_every_field() -> None:
    info = ToolInfo.from_dict(TOOL)
    assert info == ToolInfo(
        tool_name="execute_query", server_name="postgres-mcp", description="Run SQL",
        sensitivity_level="critical", input_schema=TOOL["input_schema"],
        annotations=ToolAnnotations(title="Query", read_only_hint=True, destructive_hint=False,
                                    idempotent_hint=True, open_world_hint=False),
        sensitive_params=("password",),
    )
    assert info.name == "execute_query"


def test_tool_info_ignores_unknown_fields_and_defaults_missing_ones() -> None:
    info = ToolInfo.from_dict({"tool_name": "t", "server_name": "s", "outputSchema": {}, "x": 1})
    assert info == ToolInfo(tool_name="t", server_name="s", description="",
                            sensitivity_level="medium", input_schema={},
                            annotations=ToolAnnotations(), sensitive_params=())


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"server_name": "s"}, "tool_name"),
        ({"tool_name": "t"}, "server_name"),
        ({"tool_name": "t", "server_name": "s", "input_schema": []}, "input_schema"),
        ({"tool_name": "t", "server_name": "s", "sensitive_params": "password"},
         "sensitive_params"),
        ({"tool_name": "t", "server_name": "s", "description": 5}, "description"),
        ({"tool_name": "t", "server_name": "s", "annotations": {"readOnlyHint": "yes"}},
         "readOnlyHint"),
    ],
)
def test_tool_info_wrong_type_or_missing_field_names_the_field(data: dict[str, Any], field: str
                                                               ) -> None:
    with pytest.raises(ValueError, match=f"'{field}'"):
        ToolInfo.from_dict(data)


def test_tool_annotations_defaults_follow_mcp() -> None:
    assert ToolAnnotations.from_dict(None) == ToolAnnotations(
        title=None, read_only_hint=False, destructive_hint=True, idempotent_hint=False,
        open_world_hint=True)
    assert ToolAnnotations.from_dict({"unknownHint": True}) == ToolAnnotations()


@pytest.mark.parametrize(
    ("annotations", "safe"),
    [({}, False), ({"readOnlyHint": True}, True), ({"idempotentHint": True}, True),
     ({"destructiveHint": False}, False)],
)
def test_tool_annotations_retry_safe_only_for_read_only_or_idempotent(
    annotations: dict[str, bool], safe: bool
) -> None:
    assert ToolAnnotations.from_dict(annotations).retry_safe is safe


# -- ToolResult ------------------------------------------------------------------------------------


def _invoke_body(**result: Any) -> dict[str, Any]:
    return {"request_id": "req-1", "server": "srv", "tool": "echo", "result": result,
            "filtered": ["password"], "unknown": True}


def test_tool_result_from_invoke_response() -> None:
    body = _invoke_body(content=[{"type": "text", "text": "hi"}], structuredContent={"n": 1},
                        isError=False)
    result = ToolResult.from_invoke_response(body, server="s", tool="t", latency_ms=12.5,
                                             attempts=2)
    assert result == ToolResult(
        content=({"type": "text", "text": "hi"},), structured={"n": 1}, is_error=False,
        request_id="req-1", server="srv", tool="echo", latency_ms=12.5, attempts=2,
        filtered=("password",),
    )


def test_tool_result_defaults_server_and_tool_to_the_call_and_content_to_empty() -> None:
    result = ToolResult.from_invoke_response({"result": {}}, server="s", tool="t",
                                             latency_ms=1.0, attempts=1)
    assert (result.content, result.structured, result.is_error, result.request_id,
            result.server, result.tool, result.filtered) == ((), None, False, None, "s", "t", ())


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "result"),
        ({"result": []}, "result"),
        ({"result": {"content": "hi"}}, "result.content"),
        ({"result": {"content": ["hi"]}}, "result.content"),
        ({"result": {"structuredContent": [1]}}, "result.structuredContent"),
        ({"result": {"isError": "true"}}, "result.isError"),
        ({"result": {}, "request_id": 5}, "request_id"),
    ],
)
def test_tool_result_malformed_invoke_response_names_the_field(body: dict[str, Any], field: str
                                                               ) -> None:
    with pytest.raises(ValueError, match=f"'{field}'"):
        ToolResult.from_invoke_response(body, server="s", tool="t", latency_ms=0, attempts=1)


def _result(*blocks: dict[str, Any], structured: Any = None, is_error: bool = False) -> ToolResult:
    return ToolResult(content=blocks, structured=structured, is_error=is_error, request_id="r-1",
                      server="srv", tool="echo", latency_ms=12.34, attempts=2)


def test_text_joins_text_blocks_and_skips_others() -> None:
    result = _result({"type": "text", "text": "a"}, {"type": "image", "data": "..."},
                     {"type": "text", "text": "b"})
    assert result.text == "a\nb"


def test_json_prefers_structured_content() -> None:
    assert _result({"type": "text", "text": "[1]"}, structured={"k": "v"}).json() == {"k": "v"}


def test_json_parses_the_text_when_there_is_no_structured_content() -> None:
    assert _result({"type": "text", "text": '{"rows": [1, 2]}'}).json() == {"rows": [1, 2]}


def test_raise_for_error_returns_self_when_the_tool_succeeded() -> None:
    result = _result({"type": "text", "text": "ok"})
    assert result.raise_for_error() is result


def test_raise_for_error_raises_tool_execution_error_with_the_result() -> None:
    result = _result({"type": "text", "text": "relation missing\nat line 2"}, is_error=True)
    with pytest.raises(ToolExecutionError) as info:
        result.raise_for_error()
    error = info.value
    assert error.result is result
    assert (error.server, error.tool, error.request_id) == ("srv", "echo", "r-1")
    assert error.message == "tool srv/echo reported an error: relation missing"


def test_raise_for_error_without_text_says_no_message() -> None:
    with pytest.raises(ToolExecutionError, match="reported an error: no message"):
        _result(is_error=True).raise_for_error()


def test_tool_result_repr_shows_identity_not_content() -> None:
    result = _result({"type": "text", "text": "secret rows"})
    assert repr(result) == (
        "<ToolResult srv/echo is_error=False blocks=1 request_id=r-1 latency_ms=12.3 attempts=2>"
    )


# -- ToolCall --------------------------------------------------------------------------------------


def test_tool_call_repr_hides_user_token_and_sensitive_parameter_values() -> None:
    call = ToolCall("srv", "login", {"user": "bob", "password": "hunter2",
                                     "nested": {"api_key": "sk-123"}},
                    user_token="eyJhbGciOi.jwt.sig")
    text = repr(call)
    assert text == (
        "ToolCall(server='srv', tool='login', parameters={'user': 'bob', "
        "'password': '[secure]', 'nested': {'api_key': '[secure]'}}, user_token=[secure])"
    )
    assert "hunter2" not in text and "sk-123" not in text and "eyJhbGciOi" not in text


def test_tool_call_repr_without_token_omits_it() -> None:
    assert repr(ToolCall("s", "t")) == "ToolCall(server='s', tool='t', parameters={})"


def test_tool_call_str_is_as_safe_as_its_repr() -> None:
    assert "hunter2" not in str(ToolCall("s", "t", {"password": "hunter2"}))
