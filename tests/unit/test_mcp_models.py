"""The values of resources, prompts and completions read from what an MCP server sent: every
field checked, a hostile value a ``ValueError`` naming the field and the server (the session
skips the item or raises ProtocolError), reprs without payloads."""

from __future__ import annotations

import base64
import dataclasses
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sark_sync._mcp_models import (
    MAX_COMPLETION_VALUES,
    Completion,
    Prompt,
    PromptArgument,
    PromptMessage,
    PromptResult,
    Resource,
    ResourceContents,
    ResourceResult,
    ResourceTemplate,
)

RESOURCE = {"uri": "file:///a.txt", "name": "a", "title": "A file", "description": "the a",
            "mimeType": "text/plain", "size": 12, "annotations": {"priority": 0.5},
            "icons": [{"src": "https://x.test/i.png"}], "_meta": {"k": 1}, "unknown": "kept out"}


def test_a_resource_keeps_every_field_it_knows() -> None:
    resource = Resource.from_dict(RESOURCE, "s")
    assert resource == Resource(uri="file:///a.txt", name="a", title="A file",
                                description="the a", mime_type="text/plain", size=12,
                                annotations={"priority": 0.5},
                                icons=({"src": "https://x.test/i.png"},), meta={"k": 1})


def test_a_minimal_resource_takes_the_defaults() -> None:
    assert Resource.from_dict({"uri": "u:1", "name": "n"}, "s") == Resource(uri="u:1", name="n")


@pytest.mark.parametrize(("key", "value"), [
    ("uri", None), ("uri", 7), ("name", None), ("name", ["n"]), ("title", 1),
    ("description", {}), ("mimeType", 3), ("size", -1), ("size", True), ("size", 1.5),
    ("size", "12"), ("annotations", "high"), ("icons", "x"), ("icons", [{"src": 1}]),
    ("icons", [1]), ("_meta", []),
])
def test_a_resource_with_a_field_of_the_wrong_type_is_refused(key: str, value: Any) -> None:
    with pytest.raises(ValueError, match="of 'srv'"):
        Resource.from_dict(dict(RESOURCE, **{key: value}), "srv")


@pytest.mark.parametrize("item", [None, "a", 1, [RESOURCE]])
def test_a_resource_that_is_not_an_object_is_refused(item: Any) -> None:
    with pytest.raises(ValueError, match="must be an object"):
        Resource.from_dict(item, "s")


def test_a_resources_repr_leaves_out_description_annotations_and_meta() -> None:
    text = repr(Resource.from_dict(dict(RESOURCE, description="D" * 10_000,
                                        _meta={"big": "M" * 10_000}), "s"))
    assert "DDD" not in text and "MMM" not in text and "file:///a.txt" in text


def test_the_values_are_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        Resource(uri="u", name="n").uri = "v"  # type: ignore[misc]


def test_the_values_are_hashable_though_they_carry_json_objects() -> None:
    resource = Resource.from_dict(RESOURCE, "s")
    assert {resource, Resource.from_dict(RESOURCE, "s")} == {resource}
    prompt = PromptResult.from_dict({"messages": [
        {"role": "user", "content": {"type": "text", "text": "hi"}}], "_meta": {"a": 1}}, "s")
    read = ResourceResult.from_dict({"contents": [{"uri": "u", "text": "t",
                                                   "_meta": {"b": 2}}]}, "s")
    template = ResourceTemplate.from_dict({"uriTemplate": "t://{x}", "name": "t",
                                           "annotations": {}, "icons": [{"src": "i"}]}, "s")
    assert len({prompt, read, template, Prompt.from_dict(PROMPT, "s"),
                Completion(values=("a",))}) == 5


def test_a_resource_template_is_read_from_its_uri_template() -> None:
    template = ResourceTemplate.from_dict({"uriTemplate": "note://{name}", "name": "note",
                                           "mimeType": "text/plain"}, "s")
    assert (template.uri_template, template.name, template.mime_type) == (
        "note://{name}", "note", "text/plain")
    with pytest.raises(ValueError, match="'uriTemplate'"):
        ResourceTemplate.from_dict({"uri": "note://x", "name": "note"}, "s")


def test_text_contents_keep_their_text() -> None:
    part = ResourceContents.from_dict({"uri": "u", "mimeType": "text/plain", "text": "hi"}, "s")
    assert (part.uri, part.mime_type, part.text, part.blob) == ("u", "text/plain", "hi", None)


def test_blob_contents_are_decoded_to_bytes() -> None:
    raw = bytes(range(256))
    part = ResourceContents.from_dict({"uri": "u", "blob": base64.b64encode(raw).decode()}, "s")
    assert (part.blob, part.text) == (raw, None)


@pytest.mark.parametrize("blob", ["not base64!", "QUJDRA=", "QUJ", "QU JD", "é", "Q==="])
def test_a_blob_that_is_not_base64_is_refused(blob: str) -> None:
    with pytest.raises(ValueError, match="'blob' is not valid base64"):
        ResourceContents.from_dict({"uri": "u", "blob": blob}, "s")


@pytest.mark.parametrize("item", [{"uri": "u"}, {"uri": "u", "text": "a", "blob": "QQ=="},
                                  {"uri": "u", "text": 1}, {"text": "a"}])
def test_contents_need_a_uri_and_exactly_one_of_text_and_blob(item: Any) -> None:
    with pytest.raises(ValueError):
        ResourceContents.from_dict(item, "s")


def test_the_repr_of_contents_shows_sizes_not_payloads() -> None:
    text = ResourceContents(uri="u", text="T" * 100_000)
    blob = ResourceContents(uri="u", blob=b"\0" * 2048)
    assert repr(text) == "ResourceContents(uri='u', mime_type=None, text=100000 chars)"
    assert repr(blob) == "ResourceContents(uri='u', mime_type=None, blob=2048 bytes)"


def test_a_read_result_joins_its_text_parts_and_keeps_its_blobs() -> None:
    result = ResourceResult.from_dict({"contents": [
        {"uri": "a", "text": "one"}, {"uri": "b", "blob": "AAE="}, {"uri": "c", "text": "two"},
    ], "_meta": {"m": 1}}, "s")
    assert result.text == "one\ntwo"
    assert [p.blob for p in result.contents] == [None, b"\0\1", None]
    assert result.meta == {"m": 1}
    assert ResourceResult(contents=()).text == ""


@pytest.mark.parametrize("item", [{}, {"contents": {}}, {"contents": [{"uri": "a"}]},
                                  {"contents": [1]}, {"contents": [], "_meta": 5}, []])
def test_a_read_result_with_any_malformed_part_is_refused(item: Any) -> None:
    with pytest.raises(ValueError):
        ResourceResult.from_dict(item, "s")


def test_the_repr_of_a_large_read_result_counts_its_parts() -> None:
    result = ResourceResult(contents=tuple(ResourceContents(uri=str(i), text="x")
                                           for i in range(1000)))
    assert repr(result) == "ResourceResult(contents=<1000 parts>)"


PROMPT = {"name": "greet", "title": "Greeting", "description": "Greet someone",
          "arguments": [{"name": "name", "description": "who", "required": True},
                        {"name": "style"}], "_meta": {"x": 1}}


def test_a_prompt_keeps_its_arguments() -> None:
    prompt = Prompt.from_dict(PROMPT, "s")
    assert (prompt.name, prompt.title, prompt.description, prompt.meta) == (
        "greet", "Greeting", "Greet someone", {"x": 1})
    assert prompt.arguments == (PromptArgument(name="name", description="who", required=True),
                                PromptArgument(name="style"))


@pytest.mark.parametrize("arguments", ["x", [{"name": 1}], [{"name": "a", "required": "yes"}],
                                       [None]])
def test_a_prompt_with_a_malformed_argument_is_refused(arguments: Any) -> None:
    with pytest.raises(ValueError):
        Prompt.from_dict(dict(PROMPT, arguments=arguments), "s")


def test_a_prompt_result_keeps_its_messages_in_order() -> None:
    result = PromptResult.from_dict({"description": "d", "messages": [
        {"role": "user", "content": {"type": "text", "text": "hello"}},
        {"role": "assistant", "content": {"type": "image", "data": "AA==",
                                          "mimeType": "image/png"}},
    ]}, "s")
    assert result.description == "d"
    assert [(m.role, m.text) for m in result.messages] == [("user", "hello"),
                                                           ("assistant", None)]
    assert repr(result.messages[0]) == "PromptMessage(role='user', type='text')"


@pytest.mark.parametrize("message", [
    {"role": "system", "content": {"type": "text", "text": "x"}},
    {"role": "user", "content": "x"}, {"role": "user", "content": {"text": "x"}},
    {"role": "user"}, "user: x",
])
def test_a_prompt_result_with_a_malformed_message_is_refused(message: Any) -> None:
    with pytest.raises(ValueError):
        PromptResult.from_dict({"messages": [message]}, "s")
    with pytest.raises(ValueError):
        PromptMessage.from_dict(message, "s")


def test_a_prompt_result_without_messages_is_refused() -> None:
    with pytest.raises(ValueError, match="no messages list"):
        PromptResult.from_dict({"description": "d"}, "s")


def test_a_completion_keeps_values_total_and_has_more() -> None:
    completion = Completion.from_dict(
        {"completion": {"values": ["alpha", "alpine"], "total": 9, "hasMore": True}}, "s")
    assert completion == Completion(values=("alpha", "alpine"), total=9, has_more=True)
    assert Completion.from_dict({"completion": {"values": []}}, "s") == Completion(values=())


def test_a_completion_is_cut_at_the_spec_limit_and_says_there_is_more() -> None:
    values = [f"v{i}" for i in range(100_000)]
    completion = Completion.from_dict({"completion": {"values": values}}, "s")
    assert completion.values == tuple(values[:MAX_COMPLETION_VALUES])
    assert completion.has_more is True
    assert repr(completion) == ("Completion(values=('v0', 'v1', 'v2', 'v3', 'v4', ... 100 "
                                "values), total=None, has_more=True)")


@pytest.mark.parametrize("item", [
    {}, {"completion": []}, {"completion": {}}, {"completion": {"values": "abc"}},
    {"completion": {"values": ["a", 1]}}, {"completion": {"values": [], "total": -1}},
    {"completion": {"values": [], "hasMore": "no"}},
])
def test_a_malformed_completion_is_refused(item: Any) -> None:
    with pytest.raises(ValueError):
        Completion.from_dict(item, "s")


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.sampled_from(["uri", "name", "uriTemplate", "text", "blob", "role",
                                       "content", "type", "messages", "contents", "values",
                                       "completion", "arguments", "size", "_meta", "icons",
                                       "required", "total", "hasMore"]) | st.text(max_size=4),
                      children, max_size=6),
    max_leaves=20)
PARSERS = [Resource, ResourceTemplate, ResourceContents, ResourceResult, Prompt,
           PromptArgument, PromptMessage, PromptResult, Completion]


@settings(max_examples=300, deadline=None)
@given(item=JSON, parser=st.sampled_from(PARSERS))
def test_any_json_either_parses_or_raises_value_error(item: Any, parser: Any) -> None:
    try:
        value = parser.from_dict(item, "s")
    except ValueError:
        return
    assert isinstance(value, parser)
    repr(value)
