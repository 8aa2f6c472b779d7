"""The values of the server's requests to the client (sampling, elicitation, roots): what they
accept from a peer (ValueError otherwise), what a handler may answer (ValidationError
otherwise), and the wire shape of the answers."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sark_sync import ValidationError
from sark_sync._mcp_requests import (
    ElicitationRequest,
    ElicitationResult,
    Root,
    RootsRequest,
    SamplingMessage,
    SamplingRequest,
    SamplingResult,
)

TEXT = {"type": "text", "text": "Hi"}
SAMPLE = {"messages": [{"role": "user", "content": TEXT}], "maxTokens": 50}
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                               max_size=3), max_leaves=12)


def test_a_sampling_request_keeps_every_field() -> None:
    params = dict(SAMPLE, systemPrompt="sys", temperature=0.5, stopSequences=["\n"],
                  modelPreferences={"hints": [{"name": "claude"}]}, includeContext="none",
                  metadata={"k": 1}, _meta={"x": 1})
    request = SamplingRequest.from_params(params, "srv")
    assert request == SamplingRequest(
        messages=(SamplingMessage("user", TEXT),), max_tokens=50, system_prompt="sys",
        temperature=0.5, stop_sequences=("\n",), model_preferences={"hints": [{"name": "claude"}]},
        include_context="none", metadata={"k": 1}, server="srv")
    assert request.raw == params and request.messages[0].text == "Hi"
    with pytest.raises(dataclasses.FrozenInstanceError):
        request.max_tokens = 1  # type: ignore[misc]


@pytest.mark.parametrize(("params", "message"), [
    ([], "must be an object"),
    ({"maxTokens": 5}, "messages must be a list"),
    (dict(SAMPLE, maxTokens=True), "maxTokens must be an integer >= 1"),
    (dict(SAMPLE, maxTokens=0), "maxTokens must be an integer >= 1"),
    (dict(SAMPLE, temperature=float("inf")), "temperature must be a finite number"),
    (dict(SAMPLE, stopSequences=[1]), "stopSequences must be a list of strings"),
    (dict(SAMPLE, includeContext="everything"), "includeContext must be one of"),
    (dict(SAMPLE, messages=[{"role": "system", "content": TEXT}]), "role must be one of"),
    (dict(SAMPLE, messages=[{"role": "user", "content": "hi"}]), "must be a content block"),
    (dict(SAMPLE, messages=[{"role": "user"}] * 1001), "at most 1000 messages"),
    (dict(SAMPLE, systemPrompt="x" * 1_000_001), "longer than"),
])
def test_a_malformed_sampling_request_is_a_value_error(params: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SamplingRequest.from_params(params, "srv")


def test_a_message_may_hold_a_list_of_blocks() -> None:
    message = SamplingMessage.from_dict({"role": "assistant", "content": [
        {"type": "image", "data": "AA==", "mimeType": "image/png"}, TEXT]})
    assert message.text == "Hi"
    assert message.to_dict()["content"][1] == TEXT


def test_sampling_results_in_the_spec_shape() -> None:
    assert SamplingResult("Hello", model="m").to_dict() == {
        "role": "assistant", "content": {"type": "text", "text": "Hello"}, "model": "m"}
    assert SamplingResult([TEXT], model="m", stop_reason="maxTokens").to_dict() == {
        "role": "assistant", "content": [TEXT], "model": "m", "stopReason": "maxTokens"}
    wire = {"role": "assistant", "content": TEXT, "model": "m", "stopReason": "endTurn"}
    assert SamplingResult.from_dict(wire).to_dict() == wire


@pytest.mark.parametrize("value", [
    {"content": "x"}, {"content": 5, "model": "m"}, {"content": "x", "model": "m", "role": "bot"},
    {"content": "x", "model": "m", "stopReason": 3}, "text"])
def test_an_invalid_sampling_result_is_a_validation_error(value: Any) -> None:
    with pytest.raises(ValidationError):
        SamplingResult.from_dict(value)


def test_an_elicitation_request_in_form_and_url_mode() -> None:
    schema = {"type": "object", "properties": {"name": {"type": "string"}}}
    form = ElicitationRequest.from_params({"message": "Name?", "requestedSchema": schema}, "s")
    assert (form.message, form.requested_schema, form.mode, form.url) == (
        "Name?", schema, "form", None)
    url = ElicitationRequest.from_params({"mode": "url", "message": "Sign in", "url":
                                          "https://x", "elicitationId": "e1"}, "s")
    assert (url.mode, url.url, url.elicitation_id, url.requested_schema) == (
        "url", "https://x", "e1", {})


@pytest.mark.parametrize("params", [
    None, {"message": "m"}, {"message": 1, "requestedSchema": {"type": "object"}},
    {"message": "m", "requestedSchema": {"type": "string"}},
    {"message": "m", "requestedSchema": {"type": "object", "properties": []}},
    {"mode": "voice", "message": "m"}, {"mode": "url", "message": "m"}])
def test_a_malformed_elicitation_request_is_a_value_error(params: Any) -> None:
    with pytest.raises(ValueError):
        ElicitationRequest.from_params(params, "s")


def test_elicitation_results() -> None:
    assert ElicitationResult.accept({"name": "Ada", "tags": ("a", "b")}).to_dict() == {
        "action": "accept", "content": {"name": "Ada", "tags": ["a", "b"]}}
    assert ElicitationResult.accept().to_dict() == {"action": "accept"}
    assert ElicitationResult.decline().to_dict() == {"action": "decline"}
    assert ElicitationResult.cancel().to_dict() == {"action": "cancel"}
    assert ElicitationResult.from_dict({"action": "decline"}) == ElicitationResult.decline()


@pytest.mark.parametrize("value", [
    {"action": "maybe"}, {"action": "decline", "content": {}},
    {"action": "accept", "content": {"x": {"nested": 1}}},
    {"action": "accept", "content": {"x": [1]}}, {"action": "accept", "content": [1]}, None])
def test_an_invalid_elicitation_result_is_a_validation_error(value: Any) -> None:
    with pytest.raises(ValidationError):
        ElicitationResult.from_dict(value)


def test_roots() -> None:
    assert Root("file:///a", "A").to_dict() == {"uri": "file:///a", "name": "A"}
    assert Root.coerce("file:///b") == Root("file:///b")
    assert Root.coerce({"uri": "file:///c"}) == Root("file:///c")
    for bad in ("/tmp", "https://x", {"uri": 5}):
        with pytest.raises(ValidationError, match="a root's uri must be a str starting with "
                                                  "file://"):
            Root.coerce(bad)
    with pytest.raises(ValidationError, match="a root must be a Root, a str or a dict, not int"):
        Root.coerce(5)
    assert RootsRequest.from_params(None, "s") == RootsRequest("s")
    with pytest.raises(ValueError):
        RootsRequest.from_params([1], "s")


@given(json_values)
def test_from_params_raises_only_value_error_on_arbitrary_json(params: Any) -> None:
    for parse in (SamplingRequest.from_params, ElicitationRequest.from_params,
                  RootsRequest.from_params):
        try:
            parse(params, "s")
        except ValueError:
            pass
