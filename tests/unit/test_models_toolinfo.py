"""ToolInfo keeps what an MCP Tool declares beyond its input: title, outputSchema, icons, _meta.

The gateway form (from_dict / to_dict) carries them as title, output_schema, icons, meta,
each optional (an older gateway sends none); a field of the wrong type rejects the tool with
ValueError, as every other field does, so that a listing skips that tool alone.
"""

from __future__ import annotations

from typing import Any

import pytest

from sark_sync._models import ToolInfo
from sark_sync.transports._mcp_tools import tool_info

SCHEMA = {"type": "object", "properties": {"sum": {"type": "number"}}, "required": ["sum"]}
ICON = {"src": "https://example.test/add.png", "mimeType": "image/png", "sizes": ["48x48"]}


def full() -> dict[str, Any]:
    return {"tool_name": "add", "server_name": "calc", "title": "Add numbers",
            "output_schema": SCHEMA, "icons": [ICON], "meta": {"vendor/x": 1}}


def test_from_dict_keeps_the_mcp_fields() -> None:
    info = ToolInfo.from_dict(full())
    assert info.title == "Add numbers"
    assert info.output_schema == SCHEMA
    assert info.icons == (ICON,)
    assert info.meta == {"vendor/x": 1}


def test_an_older_gateway_sends_none_of_them() -> None:
    info = ToolInfo.from_dict({"tool_name": "add", "server_name": "calc"})
    assert (info.title, info.output_schema, info.icons, info.meta) == (None, None, (), {})


def test_to_dict_round_trips_and_omits_what_is_unset() -> None:
    info = ToolInfo.from_dict(full())
    assert ToolInfo.from_dict(info.to_dict()) == info
    bare = ToolInfo(tool_name="add", server_name="calc").to_dict()
    assert not {"title", "output_schema", "icons", "meta"} & set(bare)
    assert bare["annotations"]["readOnlyHint"] is False
    assert ToolInfo.from_dict(bare) == ToolInfo(tool_name="add", server_name="calc")


def test_an_empty_output_schema_is_kept_apart_from_none() -> None:
    info = ToolInfo.from_dict(dict(full(), output_schema={}))
    assert info.output_schema == {}
    assert info.to_dict()["output_schema"] == {}


def test_repr_shows_the_new_fields() -> None:
    text = repr(ToolInfo.from_dict(full()))
    assert "title='Add numbers'" in text and "output_schema=" in text and "icons=" in text


def test_values_are_copied_not_shared() -> None:
    data = full()
    info = ToolInfo.from_dict(data)
    data["output_schema"]["required"] = []  # type: ignore[index]
    data["meta"]["vendor/x"] = 2  # type: ignore[index]
    assert info.meta == {"vendor/x": 1}
    assert info.output_schema is not data["output_schema"]


@pytest.mark.parametrize(("field", "value", "named"), [
    ("title", 3, "title"),
    ("output_schema", "not a schema", "output_schema"),
    ("output_schema", [SCHEMA], "output_schema"),
    ("icons", {"src": "x"}, "icons"),
    ("icons", ["x.png"], "icons"),
    ("icons", [{"mimeType": "image/png"}], "icons"),
    ("icons", [{"src": 5}], "icons"),
    ("meta", ["a"], "meta"),
    ("meta", "m", "meta"),
])
def test_a_hostile_value_rejects_the_tool_naming_the_field(
        field: str, value: object, named: str) -> None:
    with pytest.raises(ValueError, match=named):
        ToolInfo.from_dict(dict(full(), **{field: value}))


def test_the_mcp_tool_maps_onto_the_gateway_fields() -> None:
    info = tool_info({"name": "add", "title": "Add", "inputSchema": {"type": "object"},
                      "outputSchema": SCHEMA, "icons": [ICON], "_meta": {"k": "v"},
                      "annotations": {"readOnlyHint": True}}, "calc")
    assert (info.tool_name, info.server_name, info.title) == ("add", "calc", "Add")
    assert info.output_schema == SCHEMA and info.icons == (ICON,) and info.meta == {"k": "v"}
    assert info.annotations.retry_safe is True


@pytest.mark.parametrize("tool", [
    {"name": "t", "outputSchema": True},
    {"name": "t", "_meta": 7},
    {"name": "t", "icons": "icon.png"},
    {"name": "t", "title": ["x"]},
])
def test_a_hostile_mcp_tool_is_rejected(tool: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        tool_info(tool, "calc")
