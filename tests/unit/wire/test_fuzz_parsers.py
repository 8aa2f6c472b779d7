"""Property-based fuzz of every parser that reads a peer's bytes.

A peer (a gateway, a stdio server, a policy engine, an event stream, a token's issuer) may send
anything. Whatever it sends, only the documented results come out: a parsed value, or the
parser's documented error (``FramingError``, ``ValueError`` for models, ``ValidationError``
for tokens), and only ``GatewayError`` once the client has translated it. A crash with some
other exception would escape the caller's ``except sark_sync.GatewayError``; a buffer that
grows with the input would let a peer exhaust the process's memory.

Example counts are bounded (the whole file runs in well under 30 s on 2 cores).
"""

from __future__ import annotations

import json
import math
import sys
import time
import tracemalloc
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from email.utils import format_datetime
from types import SimpleNamespace
from typing import Any, Callable

import pytest
import requests
import responses
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support import unsigned_jwt

from sark_sync import (
    BreakerPolicy,
    GatewayClient,
    GatewayError,
    Health,
    ProtocolError,
    RetryPolicy,
    ServerInfo,
    ToolInfo,
    ToolResult,
    ValidationError,
)
from sark_sync._models import ToolAnnotations
from sark_sync.governance._decision import Decision
from sark_sync.governance._principal import principal_from_token, principal_id_from_token
from sark_sync.resilience._retrying import MAX_RETRY_AFTER, parse_retry_after
from sark_sync.transports._common import ENVELOPE_FIELD_CHARS, error_from_response
from sark_sync.wire import _jsonrpc as rpc
from sark_sync.wire._pagination import parse_page
from sark_sync.wire._sse import EventTooLarge, SSEFramer, fields_of, has_data, simple_fields

FUZZ = settings(max_examples=150, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
FEW = settings(max_examples=40, deadline=None,
               suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

#: A peer's whole message of this size must not cost more than MEMORY_BOUND to refuse.
ONE_MB = 1024 * 1024
MEMORY_BOUND = 4 * ONE_MB

#: JSON scalars of every type, huge and odd numbers included.
json_scalars = (
    st.none() | st.booleans() | st.integers()
    | st.integers(min_value=-(10 ** 60), max_value=10 ** 60)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=40)
)
#: Any JSON value (objects, arrays, scalars), a few levels deep.
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=20,
)


def nested(depth: int, opener: bytes = b"[", closer: bytes = b"]", inner: bytes = b"1") -> bytes:
    """A JSON text nested ``depth`` levels deep: deeper than json's recursion limit allows."""
    return opener * depth + inner + closer * depth


@contextmanager
def peak_memory() -> Iterator[list[int]]:
    """Yield a list that holds, after the block, the peak bytes allocated inside it."""
    result: list[int] = []
    tracemalloc.start()
    try:
        yield result
    finally:
        result.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()


# -- JSON-RPC lines (stdio) ------------------------------------------------------------------


def _parse_or_framing_error(line: bytes | str) -> rpc.Message | rpc.FramingError:
    try:
        message = rpc.parse_line(line)
    except rpc.FramingError as exc:
        for found in (exc.id, exc.salvaged_id):
            assert found is None or (isinstance(found, (int, str)) and not isinstance(found, bool))
        assert len(str(exc)) < 400, "a framing error quotes only a short prefix of the line"
        return exc
    assert isinstance(message, (rpc.Request, rpc.Notification, rpc.Response, rpc.ErrorResponse))
    return message


@FUZZ
@given(st.binary(max_size=300) | st.text(max_size=300))
def test_parse_line_on_arbitrary_input_gives_a_message_or_a_framing_error(line: Any) -> None:
    _parse_or_framing_error(line)


ids = json_values | st.integers() | st.text(max_size=10)
rpc_objects = st.fixed_dictionaries(
    {},
    optional={
        "jsonrpc": st.sampled_from(["2.0", "1.0", 2.0]) | json_scalars,
        "id": ids, "method": st.text(max_size=10) | json_values, "params": json_values,
        "result": json_values, "error": json_values
        | st.fixed_dictionaries({}, optional={"code": json_scalars, "message": json_scalars,
                                              "data": json_values}),
    },
)


@FUZZ
@given(rpc_objects)
def test_parse_line_on_arbitrary_json_objects_keeps_its_contract(obj: dict[str, Any]) -> None:
    result = _parse_or_framing_error(json.dumps(obj).encode())
    if isinstance(result, (rpc.Request, rpc.Response)):
        assert type(result.id) in (int, str), "ids are strings or integers, never bool or float"
        assert result.id == obj["id"]
    if isinstance(result, (rpc.Request, rpc.Notification)):
        assert isinstance(result.method, str) and result.method
        assert result.params is None or isinstance(result.params, dict)
    if isinstance(result, rpc.ErrorResponse):
        assert isinstance(result.code, int)
        assert isinstance(result.message, str)


@FUZZ
@given(st.binary(min_size=1, max_size=40).filter(lambda tail: b'"' not in tail
                                                 and b"\\" not in tail))
def test_parse_line_refuses_invalid_utf8_with_a_framing_error_naming_the_id(tail: bytes) -> None:
    line = b'{"jsonrpc":"2.0","id":1,"result":"\xff\xfe' + tail + b'"}'
    with pytest.raises(rpc.FramingError, match=r"^not valid UTF-8 \(at byte 34\)$") as info:
        rpc.parse_line(line)
    assert (info.value.id, info.value.salvaged_id) == (None, 1)


def test_parse_line_on_a_number_too_long_to_convert_is_a_framing_error_or_a_response() -> None:
    # Python >= 3.11 refuses int() of more than 4300 digits (CVE-2020-10735): a ValueError.
    line = b'{"jsonrpc":"2.0","id":3,"result":' + b"9" * 5000 + b"}"
    if not hasattr(sys, "get_int_max_str_digits"):  # Python 3.9, 3.10: no limit
        assert rpc.parse_line(line) == rpc.Response(3, int("9" * 5000))
        return
    with pytest.raises(rpc.FramingError, match=r"^not JSON: ") as info:
        rpc.parse_line(line)
    assert (info.value.id, info.value.salvaged_id) == (None, 3)


@pytest.mark.parametrize("depth", [1_000, 100_000])
def test_parse_line_refuses_a_line_nested_too_deeply_with_a_framing_error(depth: int) -> None:
    line = b'{"jsonrpc":"2.0","id":"a","result":' + nested(depth) + b"}"
    try:
        message = rpc.parse_line(line)
    except rpc.FramingError as exc:
        assert str(exc) == "nested too deeply to decode" and exc.salvaged_id == "a"
    else:  # shallow enough for this interpreter's recursion limit
        assert depth < 10_000 and isinstance(message, rpc.Response)


@FUZZ
@given(st.binary(max_size=300) | st.text(max_size=300)
       | rpc_objects.map(lambda obj: json.dumps(obj)[:-1]))
def test_salvage_id_on_arbitrary_input_gives_an_id_or_none(line: Any) -> None:
    found = rpc.salvage_id(line)
    assert found is None or type(found) in (int, str)


@FEW
@given(
    chunks=st.lists(st.binary(max_size=40) | st.sampled_from([b"\n", b"\r\n", b"\r", b" \n"]),
                    max_size=30),
    cap=st.integers(min_value=1, max_value=64),
)
def test_line_splitter_splits_any_chunking_like_a_plain_split(chunks: list[bytes],
                                                               cap: int) -> None:
    splitter = rpc.LineSplitter(cap)
    got: list[Any] = []
    for chunk in chunks:
        got.extend(splitter.feed(chunk))
        assert splitter.pending <= sum(map(len, chunks))
    got.extend(splitter.finish())

    expected: list[Any] = []
    for part in b"".join(chunks).split(b"\n"):
        if len(part) > cap:
            expected.append(part)
        else:
            line = part[:-1] if part.endswith(b"\r") else part
            if line.strip():
                expected.append(line)
    assert len(got) == len(expected)
    for line, part in zip(got, expected):
        if len(part) <= cap:
            assert line == part
            continue
        # An Oversize keeps the line's last 4096 bytes, and its head as held when the line
        # overflowed the cap: at least cap + 1 bytes (up to 4096).
        assert isinstance(line, rpc.Oversize)
        assert (line.size, line.tail) == (len(part), part[-4096:])
        assert part.startswith(line.head) and min(cap + 1, 4096) <= len(line.head) <= 4096


def test_line_splitter_holds_no_more_than_its_cap_of_an_oversize_line() -> None:
    cap = 64 * 1024
    chunks = [b'{"jsonrpc":"2.0","id":7,"result":"'] + [b"x" * 65536] * 16 + [b'"}\n']
    splitter = rpc.LineSplitter(cap)
    with peak_memory() as peak:
        lines = [line for chunk in chunks for line in splitter.feed(chunk)]
    assert len(lines) == 1 and isinstance(lines[0], rpc.Oversize)
    assert lines[0].size == sum(map(len, chunks)) - 1 and lines[0].find_id() == 7
    assert peak[0] < 4 * cap, f"peak {peak[0]} bytes for a {lines[0].size}-byte line"


@FUZZ
@given(st.binary(max_size=300), st.binary(max_size=300))
def test_oversize_find_id_on_arbitrary_bytes_gives_an_id_or_none(head: bytes,
                                                                   tail: bytes) -> None:
    found = rpc.Oversize(10 ** 9, head, tail).find_id()
    assert found is None or type(found) in (int, str)


# -- Retry-After -----------------------------------------------------------------------------


@FUZZ
@given(st.text(max_size=40) | st.sampled_from(
    ["nan", "-nan", "-inf", "-1", "  7 ", "\u0661\u0662", "1_0", "0x10", "1e-400", ""]))
def test_parse_retry_after_never_raises_and_is_none_or_a_non_negative_number(
        value: str) -> None:
    seconds = parse_retry_after(value)
    assert seconds is None or (isinstance(seconds, float) and seconds >= 0), seconds


@FUZZ
@given(st.datetimes(min_value=datetime(100, 1, 1), timezones=st.just(timezone.utc)))
def test_parse_retry_after_reads_any_http_date_as_seconds_from_now(when: Any) -> None:
    # An HTTP date has whole seconds; email.utils reads a year below 100 as a two-digit one.
    when = when.replace(microsecond=0)
    before = time.time()
    seconds = parse_retry_after(format_datetime(when, usegmt=True))
    after = time.time()
    assert seconds is not None and math.isfinite(seconds)
    expected = when.timestamp()
    low, high = max(0.0, expected - after), max(0.0, expected - before)
    # A date further ahead than MAX_RETRY_AFTER reads as that cap.
    assert min(low, MAX_RETRY_AFTER) - 1e-3 <= seconds <= min(high, MAX_RETRY_AFTER) + 1e-3


# -- JWT claims ------------------------------------------------------------------------------


def _check_token(token: str) -> None:
    try:
        principal = principal_from_token(token)
    except ValidationError as exc:
        assert len(token) < 16 or token not in str(exc), "the message never quotes the token"
    else:
        assert isinstance(principal.id, str) and principal.id
        assert all(isinstance(r, str) for r in principal.roles + principal.teams)
    subject = principal_id_from_token(token)
    assert subject is None or (isinstance(subject, str) and subject)


@FUZZ
@given(st.text(max_size=120) | st.from_regex(r"\A[A-Za-z0-9_-]{0,40}\.[A-Za-z0-9_-]{0,60}\."
                                             r"[A-Za-z0-9_.-]{0,20}\Z"))
def test_tokens_of_any_text_give_a_principal_or_a_validation_error(token: str) -> None:
    _check_token(token)


@FUZZ
@given(json_values | st.fixed_dictionaries(
    {}, optional={"sub": json_scalars, "roles": json_values, "teams": json_values}))
def test_jwts_with_any_json_payload_give_a_principal_or_a_validation_error(
        claims: Any) -> None:
    _check_token(unsigned_jwt(claims))


@FUZZ
@given(st.binary(max_size=80))
def test_jwts_with_any_payload_bytes_give_a_principal_or_a_validation_error(
        payload: bytes) -> None:
    _check_token(unsigned_jwt(payload))


def test_a_jwt_payload_nested_too_deeply_is_a_validation_error() -> None:
    token = unsigned_jwt(b'{"sub":"a","x":' + nested(100_000) + b"}")
    with pytest.raises(ValidationError, match=r"^user_token's payload is not base64url JSON$"):
        principal_from_token(token)
    assert principal_id_from_token(token) is None


def test_principal_id_from_token_on_values_that_are_not_text_is_none() -> None:
    for value in (None, 1, b"e30.e30.e30", ["a.b.c"], {"sub": "a"}):
        assert principal_id_from_token(value) is None


# -- gateway JSON bodies ---------------------------------------------------------------------

SECRET = "Bearer fuzz-secret-0123456789"


def _stub_response(status: int, reason: Any, headers: dict[str, str]) -> Any:
    return SimpleNamespace(status_code=status, reason=reason,
                           headers=requests.structures.CaseInsensitiveDict(headers))


envelopes = st.fixed_dictionaries({}, optional={
    "error": json_values | st.fixed_dictionaries({}, optional={
        key: json_scalars for key in ("code", "message", "request_id", "reason", "audit_id")}),
    "detail": json_values,
}).map(lambda obj: json.dumps(obj).encode())


@FUZZ
@given(
    status=st.integers(min_value=100, max_value=999),
    reason=st.none() | st.text(max_size=20),
    retry_after=st.none() | st.text(max_size=30),
    raw=st.binary(max_size=300) | envelopes | st.just(nested(100_000, b'{"a":', b"}")),
)
def test_error_from_response_on_any_body_and_status_is_a_gateway_error(
        status: int, reason: Any, retry_after: str | None, raw: bytes) -> None:
    headers = {"Authorization": SECRET}
    if retry_after is not None:
        headers["Retry-After"] = retry_after
    where = {"method": "POST", "url": "http://gateway.test/api/v1/invoke", "request_id": "r-1"}
    error = error_from_response(_stub_response(status, reason, headers), raw, where)
    assert isinstance(error, GatewayError)
    assert error.status_code == status and isinstance(error.message, str) and error.message
    assert error.retry_after is None or error.retry_after >= 0
    assert SECRET not in str(error) and SECRET not in repr(error)


def test_error_from_response_on_a_1_mb_body_stays_within_memory() -> None:
    raw = b"<html>" + b"x" * ONE_MB
    with peak_memory() as peak:
        error = error_from_response(_stub_response(502, "Bad Gateway", {}), raw,
                                    {"method": "GET", "url": "http://gateway.test/health"})
    assert error.message == "gateway answered 502 Bad Gateway"
    assert peak[0] < MEMORY_BOUND


def _model_or_value_error(parse: Callable[[Any], Any], data: Any, model: type) -> None:
    try:
        result = parse(data)
    except ValueError:
        return
    assert isinstance(result, model)


def _shaped(fields: dict[str, st.SearchStrategy[Any]]) -> st.SearchStrategy[Any]:
    """Objects with the model's own field names, each any JSON value or its usual type."""
    return json_values | st.fixed_dictionaries(
        {}, optional={name: json_values | strategy for name, strategy in fields.items()})


timestamps = st.text(max_size=40) | st.datetimes().map(lambda d: d.isoformat() + "Z")
server_objects = _shaped({
    "server_name": st.text(max_size=8), "server_id": st.text(max_size=8),
    "transport": st.text(max_size=8), "authorized_teams": st.lists(st.text(max_size=5)),
    "tools_count": st.integers(), "created_at": timestamps, "updated_at": timestamps})
annotations = _shaped({name: st.booleans() for name in
                       ("readOnlyHint", "destructiveHint", "idempotentHint", "openWorldHint")})
tool_objects = _shaped({
    "tool_name": st.text(max_size=8), "server_name": st.text(max_size=8),
    "input_schema": st.dictionaries(st.text(max_size=5), json_values, max_size=3),
    "annotations": annotations, "sensitive_params": st.lists(st.text(max_size=5))})
call_results = _shaped({
    "content": st.lists(st.dictionaries(st.text(max_size=5), json_values, max_size=3),
                        max_size=3),
    "structuredContent": st.dictionaries(st.text(max_size=5), json_values, max_size=3),
    "isError": st.booleans()})
invoke_bodies = _shaped({"result": call_results, "server": st.text(max_size=5),
                         "request_id": st.text(max_size=5),
                         "filtered": st.lists(st.text(max_size=5))})
health_bodies = _shaped({"status": st.text(max_size=8), "version": st.text(max_size=5),
                         "servers": st.integers()})
decisions = _shaped({"allow": st.booleans(), "reason": st.text(max_size=5),
                     "filtered_parameters": json_values, "cache_ttl": st.integers(),
                     "audit_id": st.text(max_size=5)})


@FUZZ
@given(server_objects, tool_objects, annotations, health_bodies, decisions)
def test_models_from_any_json_value_are_a_model_or_a_value_error(
        server: Any, tool: Any, hints: Any, health: Any, decision: Any) -> None:
    _model_or_value_error(ServerInfo.from_dict, server, ServerInfo)
    _model_or_value_error(ToolInfo.from_dict, tool, ToolInfo)
    _model_or_value_error(ToolAnnotations.from_dict, hints, ToolAnnotations)
    _model_or_value_error(Health.from_dict, health, Health)
    _model_or_value_error(Decision.from_dict, decision, Decision)


@FUZZ
@given(invoke_bodies, call_results)
def test_tool_results_from_any_json_value_are_a_result_or_a_value_error(
        body: Any, result: Any) -> None:
    def from_invoke(data: Any) -> ToolResult:
        return ToolResult.from_invoke_response(data, server="s", tool="t", latency_ms=1.0,
                                               attempts=1)

    def from_call(data: Any) -> ToolResult:
        return ToolResult.from_call_result(data, server="s", tool="t", latency_ms=1.0)

    _model_or_value_error(from_invoke, body, ToolResult)
    _model_or_value_error(from_call, result, ToolResult)


@FUZZ
@given(json_values | st.fixed_dictionaries({}, optional={
    "servers": st.lists(server_objects, max_size=4) | json_values,
    "total": st.integers() | json_values}), st.integers(min_value=0, max_value=10 ** 6))
def test_parse_page_of_any_json_value_is_a_page_or_a_protocol_error(data: Any,
                                                                    offset: int) -> None:
    try:
        items, count, total = parse_page(data, "servers", ServerInfo.from_dict, offset,
                                         "/api/v1/servers")
    except ProtocolError as exc:
        assert exc.message.startswith("malformed listing from /api/v1/servers: ")
        return
    assert all(isinstance(item, ServerInfo) for item in items)
    assert len(items) <= count == len(data["servers"]) and total == data["total"] >= 0


# -- the event stream's framing ----------------------------------------------------------------


@FEW
@given(st.lists(st.binary(max_size=30) | st.sampled_from([b"\n", b"\r", b"\r\n", b"\n\n",
                                                          b"\xef\xbb\xbf", b"data: x"]),
                max_size=30))
def test_sse_framer_on_any_chunks_gives_normalised_blocks_or_event_too_large(
        chunks: list[bytes]) -> None:
    framer = SSEFramer(max_event_bytes=64)
    try:
        for chunk in chunks:
            for block in framer.feed(chunk):
                assert block.endswith(b"\n\n") and b"\r" not in block
                event_id, retry = fields_of(block)
                assert event_id is None or isinstance(event_id, str)
                assert retry is None or retry >= 0
                has_data(block)
                fields = simple_fields(block)
                assert fields is None or all(f is None or isinstance(f, str) for f in fields)
            assert framer.pending <= 64
    except EventTooLarge as exc:
        assert exc.limit == 64 and exc.size > 64


def test_sse_framer_refuses_a_1_mb_event_holding_no_more_than_its_cap() -> None:
    cap = 64 * 1024
    chunks = [b"data: "] + [b"x" * 65536] * 16
    framer = SSEFramer(max_event_bytes=cap)
    with peak_memory() as peak, pytest.raises(EventTooLarge) as info:
        for chunk in chunks:
            framer.feed(chunk)
    assert info.value.limit == cap
    assert peak[0] < 4 * cap


# -- the HTTP transport end to end, on any response ----------------------------------------------

BASE = "http://gateway.test"
content_types = st.sampled_from(["application/json", "application/json; charset=utf-8",
                                 "application/problem+json", "text/html", "", "APPLICATION/JSON"]
                                ) | st.text(st.characters(min_codepoint=32, max_codepoint=126),
                                            max_size=20)
extra_headers = st.fixed_dictionaries({}, optional={
    "Retry-After": st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=20),
    "Location": st.just("http://elsewhere.test/"),
    "Content-Encoding": st.sampled_from(["gzip", "deflate", "br", "identity", "zstd", "x"]),
})
bodies = (st.binary(max_size=200) | invoke_bodies.map(lambda v: json.dumps(v).encode())
          | health_bodies.map(lambda v: json.dumps(v).encode())
          | st.fixed_dictionaries({"servers": st.lists(server_objects, max_size=3),
                                   "total": st.integers(-1, 5)}).map(
                                       lambda v: json.dumps(v).encode())
          | st.just(nested(100_000)))
responses_ = st.tuples(st.integers(min_value=200, max_value=599), content_types, extra_headers,
                       bodies)


def _client() -> GatewayClient:
    # `responses` answers above urllib3, which never counts attempts here: a body that breaks
    # off (say, Content-Encoding: gzip over garbage) is re-sent until the deadline, so keep it
    # short and the backoff nil.
    return GatewayClient(BASE, api_key="fuzz-api-key-0123456789", timeout=0.3,
                         retry=RetryPolicy(attempts=1, backoff_base=0, backoff_max=0),
                         breaker=BreakerPolicy(enabled=False))


def _answer(mock: responses.RequestsMock, method: str, url: str,
            answer: tuple[int, str, dict[str, str], bytes]) -> None:
    status, content_type, headers, body = answer
    mock.add(method, url, body=body, status=status, headers=headers,
             content_type=content_type or None)


def _only_gateway_errors(call: Callable[[], Any]) -> Any:
    try:
        return call()
    except GatewayError as exc:
        assert "fuzz-api-key" not in str(exc) and "fuzz-api-key" not in repr(exc)
        return exc


@pytest.mark.timeout(60)
@FEW
@given(st.data())
def test_the_http_transport_on_any_response_raises_only_gateway_errors(data: Any) -> None:
    with _client() as client:
        for _ in range(3):
            answers = [data.draw(responses_) for _ in range(3)]
            with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
                _answer(mock, "POST", f"{BASE}/api/v1/invoke", answers[0])
                _answer(mock, "GET", f"{BASE}/api/v1/servers", answers[1])
                _answer(mock, "GET", f"{BASE}/health", answers[2])
                result = _only_gateway_errors(lambda: client.invoke_tool("srv", "echo", {}))
                assert isinstance(result, (ToolResult, GatewayError))
                result = _only_gateway_errors(lambda: client.list_servers())
                assert isinstance(result, (list, GatewayError))
                result = _only_gateway_errors(lambda: client.health())
                assert isinstance(result, (Health, GatewayError))


@FUZZ
@given(st.text(max_size=40) | st.sampled_from(["inf", "Infinity", "1e400", "+inf", "nan"]))
def test_parse_retry_after_is_none_or_a_finite_number_of_seconds(value: str) -> None:
    seconds = parse_retry_after(value)
    assert seconds is None or (math.isfinite(seconds) and 0 <= seconds <= MAX_RETRY_AFTER)


@pytest.mark.parametrize(("value", "seconds"), [
    ("inf", None), ("1e400", None), ("+5", None), ("1_0", None), ("\u0661\u0662", None),
    ("-5", None), ("12", 12.0), ("0.5", 0.5), ("9" * 5000, MAX_RETRY_AFTER),
    ("Sat, 01 Jan 0068 00:00:00 GMT", 0.0), ("Wed, 21 Oct 9999 07:28:00 GMT", MAX_RETRY_AFTER),
])
def test_parse_retry_after_reads_only_what_rfc_9110_allows(value: str,
                                                          seconds: float | None) -> None:
    assert parse_retry_after(value) == seconds


def test_an_error_envelopes_fields_are_cut_to_a_bounded_length() -> None:
    body = json.dumps({"error": {"code": "c" * 5000, "message": "m" * 1_000_000,
                                 "reason": "r" * 5000}}).encode()
    error = error_from_response(_stub_response(500, "Internal Server Error", {}), body, {})
    assert len(str(error)) < 5 * ENVELOPE_FIELD_CHARS  # code (twice), message, context
    assert "m" * (ENVELOPE_FIELD_CHARS + 1) not in str(error)
    assert error.code == "c" * ENVELOPE_FIELD_CHARS + "..."
