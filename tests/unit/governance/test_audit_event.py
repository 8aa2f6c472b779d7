"""AuditEvent: fields, defaults, validation and redaction when built (docs/gateway/AUDIT.md)."""

from __future__ import annotations

import dataclasses
import json
import re
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

import sark_sync
from sark_sync._redact import Secret
from sark_sync.governance.audit import AuditEvent, rfc3339

RFC3339_UTC = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z\Z")
DESIGN_ORDER = ["event_id", "timestamp", "event_type", "operation", "principal_id", "server",
                "tool", "transport", "decision", "reason", "outcome", "error_type",
                "status_code", "request_id", "attempts", "latency_ms", "parameters"]
RAW = ("hunter2", "sk-live-123", "tok-abc", "deep-secret", "Bearer xyz", "pw-in-list")

NESTED = {
    "user": "ada",
    "password": "hunter2",
    "config": {"api_key": "sk-live-123", "retries": 3,
               "inner": [{"token": "tok-abc"}, {"items": [{"DB_Password": "pw-in-list"}]}]},
    "list": [[{"client_secret": "deep-secret"}], "plain"],
    "headers": {"Authorization": "Bearer xyz"},
}
NESTED_REDACTED = {
    "user": "ada",
    "password": "[secure]",
    "config": {"api_key": "[secure]", "retries": 3,
               "inner": [{"token": "[secure]"}, {"items": [{"DB_Password": "[secure]"}]}]},
    "list": [[{"client_secret": "[secure]"}], "plain"],
    "headers": {"Authorization": "[secure]"},
}


def assert_no_raw_secret(text: str) -> None:
    for raw in RAW:
        assert raw not in text


def test_defaults_are_a_fresh_uuid4_and_the_current_utc_time() -> None:
    before = datetime.now(timezone.utc)
    first, second = AuditEvent(), AuditEvent()
    assert uuid.UUID(first.event_id).version == 4
    assert first.event_id != second.event_id
    assert RFC3339_UTC.match(first.timestamp)
    moment = datetime.fromisoformat(first.timestamp[:-1] + "+00:00")
    assert before - timedelta(seconds=1) <= moment <= datetime.now(timezone.utc)
    assert first.event_type == "tool_invocation"
    assert first.outcome is None and first.parameters is None


def test_rfc3339_converts_aware_datetimes_to_utc_and_refuses_naive_ones() -> None:
    paris = timezone(timedelta(hours=2))
    assert rfc3339(datetime(2024, 5, 1, 14, 30, 5, 123, tzinfo=paris)) == \
        "2024-05-01T12:30:05.000123Z"
    with pytest.raises(ValueError, match="timezone-aware"):
        rfc3339(datetime(2024, 5, 1))


@pytest.mark.parametrize("timestamp", ["2024-05-01T12:00:00Z", "2024-05-01T12:00:00.1Z",
                                       "2024-05-01T12:00:00.123456789Z"])
def test_a_given_utc_timestamp_is_kept(timestamp: str) -> None:
    assert AuditEvent(timestamp=timestamp).timestamp == timestamp


@pytest.mark.parametrize("timestamp", ["2024-05-01T12:00:00+02:00", "2024-05-01 12:00:00Z",
                                       "2024-05-01T12:00:00", "yesterday"])
def test_a_timestamp_not_in_utc_rfc3339_is_refused(timestamp: str) -> None:
    with pytest.raises(ValueError, match=r"AuditEvent\.timestamp must be RFC 3339 in UTC"):
        AuditEvent(timestamp=timestamp)


def test_parameters_are_redacted_at_every_depth() -> None:
    event = AuditEvent(parameters=NESTED)
    assert event.parameters == NESTED_REDACTED
    assert event.to_dict()["parameters"] == NESTED_REDACTED
    assert json.loads(event.to_json())["parameters"] == NESTED_REDACTED
    assert_no_raw_secret(repr(event) + event.to_json() + str(event.to_dict()))


def test_secrets_as_values_and_text_fields_are_shown_as_secure() -> None:
    event = AuditEvent(principal_id=Secret("Bearer xyz"),  # type: ignore[arg-type]
                       parameters={"note": Secret("hunter2"), "list": [Secret("tok-abc")]})
    assert event.principal_id == "[secure]"
    assert event.parameters == {"note": "[secure]", "list": ["[secure]"]}
    assert_no_raw_secret(repr(event) + event.to_json())


def test_the_event_holds_a_copy_not_the_callers_object() -> None:
    params: dict[str, Any] = {"user": "ada", "items": [1, 2]}
    event = AuditEvent(parameters=params)
    params["items"].append("password=hunter2")
    params["password"] = "hunter2"
    assert event.parameters == {"user": "ada", "items": [1, 2]}
    exported = event.to_dict()
    exported["parameters"]["items"].append(3)
    assert event.parameters == {"user": "ada", "items": [1, 2]}


def test_dataclasses_replace_redacts_the_new_parameters_too() -> None:
    event = dataclasses.replace(AuditEvent(), parameters={"api_key": "sk-live-123"})
    assert event.parameters == {"api_key": "[secure]"}


def test_values_json_cannot_hold_are_shown_by_type_and_bytes_keys_are_still_redacted() -> None:
    event = AuditEvent(parameters={
        "blob": b"raw-bytes", "tags": {"a"}, "when": datetime(2024, 1, 1), "nan": float("nan"),
        "inf": float("inf"), 1: "one", None: "none", b"password": "hunter2", ("t",): "tuple",
        "tuple": (1, "x"),
    })
    assert event.parameters == {
        "blob": "<bytes>", "tags": "<set>", "when": "<datetime>", "nan": "nan", "inf": "inf",
        "1": "one", "null": "none", "password": "[secure]", "<tuple>": "tuple",
        "tuple": [1, "x"],
    }
    json.loads(event.to_json())  # valid JSON, no NaN


def test_parameters_nested_deeper_than_64_levels_are_cut() -> None:
    deep: Any = "leaf"
    for _ in range(100):
        deep = {"k": deep}
    event = AuditEvent(parameters=deep)
    text = event.to_json()
    assert "leaf" not in text and "[secure]" in text
    assert text.count('{"k":') == 64


def test_to_dict_has_every_design_field_in_order() -> None:
    event = AuditEvent(principal_id="u1", server="demo", tool="echo", transport="http",
                       decision="allow", reason="ok", outcome="success", status_code=200,
                       request_id="r1", attempts=1, latency_ms=12.5, parameters={"a": 1})
    data = event.to_dict()
    assert list(data) == DESIGN_ORDER
    assert data["server"] == "demo" and data["latency_ms"] == 12.5 and data["parameters"] == {
        "a": 1}


def test_to_json_is_one_compact_ascii_line() -> None:
    event = AuditEvent(reason="multi\nline \u2028 caf\u00e9", parameters={"text": "a\r\nb"})
    text = event.to_json()
    assert "\n" not in text and "\r" not in text and "\u2028" not in text
    assert text.isascii() and ", " not in text and ": " not in text
    assert json.loads(text)["reason"] == "multi\nline \u2028 caf\u00e9"


@pytest.mark.parametrize(
    ("fields", "error", "message"),
    [
        ({"transport": "carrier-pigeon"}, ValueError, r"AuditEvent\.transport must be one of"),
        ({"decision": "maybe"}, ValueError, r"AuditEvent\.decision must be one of"),
        ({"outcome": "ok"}, ValueError, r"AuditEvent\.outcome must be one of"),
        ({"server": 42}, TypeError, r"AuditEvent\.server must be a str or None, not int"),
        ({"event_type": None}, TypeError, r"AuditEvent\.event_type is required"),
        ({"event_type": ""}, ValueError, r"must not be empty"),
        ({"status_code": 99}, ValueError, r"AuditEvent\.status_code must be between 100 and 599"),
        ({"status_code": True}, TypeError, r"AuditEvent\.status_code must be an int"),
        ({"attempts": -1}, ValueError, r"AuditEvent\.attempts must be >= 0"),
        ({"attempts": 1.5}, TypeError, r"AuditEvent\.attempts must be an int"),
        ({"latency_ms": float("nan")}, ValueError, r"AuditEvent\.latency_ms must be finite"),
        ({"latency_ms": -1}, ValueError, r"AuditEvent\.latency_ms must be finite and >= 0"),
        ({"latency_ms": "12"}, TypeError, r"AuditEvent\.latency_ms must be a number"),
        ({"error_type": "ValueError: password hunter2"}, ValueError,
         r"AuditEvent\.error_type must be an exception class name"),
    ],
)
def test_invalid_fields_raise_naming_the_field_never_the_value(
    fields: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message) as caught:
        AuditEvent(**fields)
    assert "hunter2" not in str(caught.value) and "pigeon" not in str(caught.value)


def test_numbers_are_kept_and_latency_is_rounded_to_microseconds() -> None:
    event = AuditEvent(status_code=503, attempts=0, latency_ms=1.23456789, error_type="a.B_c")
    assert (event.status_code, event.attempts, event.latency_ms) == (503, 0, 1.235)
    assert event.error_type == "a.B_c"


def test_a_long_reason_is_cut_to_1024_characters() -> None:
    assert AuditEvent(reason="x" * 5000).reason == "x" * 1024


def test_events_are_frozen_and_hashable() -> None:
    event = AuditEvent(parameters={"a": [1]})
    with pytest.raises(dataclasses.FrozenInstanceError):
        event.server = "other"  # type: ignore[misc]
    same = dataclasses.replace(event)
    other = dataclasses.replace(event, parameters={"a": [2]})
    assert same is not event and same == event and hash(same) == hash(event)
    assert other != event and len({event, same, other}) == 2


def test_create_takes_type_status_request_id_and_attempts_from_a_gateway_error() -> None:
    error = sark_sync.ServiceUnavailableError("unavailable: password=hunter2", status_code=503,
                                              request_id="req-9", attempts=3)
    event = AuditEvent.create(error=error, server="demo", tool="echo", transport="http",
                              latency_ms=40)
    assert (event.outcome, event.error_type, event.status_code, event.request_id,
            event.attempts) == ("error", "ServiceUnavailableError", 503, "req-9", 3)
    assert event.decision is None
    assert_no_raw_secret(event.to_json())


def test_create_reports_a_denial_with_its_reason() -> None:
    error = sark_sync.AuthorizationDenied("denied", reason="role too low", status_code=403)
    event = AuditEvent.create("authorization", error=error, principal_id="u1")
    assert (event.event_type, event.outcome, event.decision, event.reason, event.error_type,
            event.status_code) == ("authorization", "denied", "deny", "role too low",
                                   "AuthorizationDenied", 403)


def test_create_reports_a_tool_error_and_a_foreign_error() -> None:
    assert AuditEvent.create(error=sark_sync.ToolExecutionError("boom")).outcome == "tool_error"
    foreign = AuditEvent.create(error=KeyError("hunter2"))
    assert (foreign.outcome, foreign.error_type, foreign.status_code) == ("error", "KeyError",
                                                                          None)
    assert "hunter2" not in foreign.to_json()


def test_create_leaves_out_error_attributes_that_do_not_fit() -> None:
    error = ValueError("x")
    error.status_code = 42  # type: ignore[attr-defined]
    error.attempts = True  # type: ignore[attr-defined]
    event = AuditEvent.create(error=error)
    assert event.status_code is None and event.attempts is None


def test_create_explicit_fields_win_over_the_errors() -> None:
    error = sark_sync.ServerError("x", status_code=500, attempts=2)
    event = AuditEvent.create(error=error, outcome="tool_error", status_code=502, attempts=5,
                              error_type="Custom")
    assert (event.outcome, event.status_code, event.attempts, event.error_type) == (
        "tool_error", 502, 5, "Custom")


@pytest.mark.parametrize(("decision", "outcome"), [(None, "success"), ("allow", "success"),
                                                   ("deny", "denied")])
def test_create_without_an_error_derives_the_outcome_from_the_decision(
    decision: str | None, outcome: str
) -> None:
    assert AuditEvent.create(decision=decision).outcome == outcome
