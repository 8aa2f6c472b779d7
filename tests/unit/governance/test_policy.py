"""The authorizers of sark_sync.governance.policy, with `responses` standing in for OPA and
SARK: what they send, how they read every kind of answer, fail-closed and fail-open, and the
decision cache with a fake clock."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
import requests
import responses

from sark_sync import (
    AuthorizationDenied,
    AuthorizationInput,
    AuthorizationUnavailable,
    ConfigurationError,
    Decision,
    OPAAuthorizer,
    Principal,
    SarkAuthorizer,
    ServerInfo,
    ToolAnnotations,
    ToolInfo,
)
from sark_sync.governance import CallableAuthorizer, DecisionCache, as_authorizer

OPA = "http://opa.test:8181"
OPA_DECISION = f"{OPA}/v1/data/sark/gateway/decision"
SARK = "http://sark.test"
SARK_AUTHORIZE = f"{SARK}/api/v1/gateway/authorize"


def make_input(parameters: Any = None, principal: Principal | None = None,
               **tool: Any) -> AuthorizationInput:
    return AuthorizationInput(
        ServerInfo("db", sensitivity_level="high", authorized_teams=("data",)),
        ToolInfo("query", "db", **{"sensitivity_level": "critical",
                                   "sensitive_params": ("password",),
                                   "annotations": ToolAnnotations(read_only_hint=True),
                                   **tool}),
        {"sql": "SELECT 1"} if parameters is None else parameters,
        Principal("alice", ("developer",), ("data",)) if principal is None else principal,
        "req-1", "2025-01-02T03:04:05.678Z")


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def mock() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock() as rsps:
        yield rsps


@pytest.fixture
def opa() -> Iterator[OPAAuthorizer]:
    with OPAAuthorizer(OPA, cache=False) as authorizer:
        yield authorizer


def sent(mock: responses.RequestsMock, index: int = 0) -> Any:
    body = mock.calls[index].request.body
    assert body is not None
    return json.loads(body)


# -- OPA: the request ------------------------------------------------------------------------


def test_opa_posts_the_input_document_to_the_data_api_of_the_policy_path(
        mock: responses.RequestsMock, opa: OPAAuthorizer) -> None:
    mock.add(responses.POST, OPA_DECISION, json={"result": {"allow": True}})
    opa.authorize(make_input())
    request = mock.calls[0].request
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["User-Agent"].startswith("sark-sync/")
    assert "X-API-Key" not in request.headers and "Authorization" not in request.headers
    assert sent(mock) == {"input": make_input().to_dict()}


def test_the_input_document_has_exactly_the_shape_of_design_section_7() -> None:
    assert make_input().to_dict() == {
        "action": "gateway:tool:invoke",
        "principal": {"id": "alice", "roles": ["developer"], "teams": ["data"]},
        "server": {"name": "db", "sensitivity_level": "high", "authorized_teams": ["data"]},
        "tool": {"name": "query", "sensitivity_level": "critical",
                 "sensitive_params": ["password"],
                 "annotations": {"readOnlyHint": True, "destructiveHint": True,
                                 "idempotentHint": False, "openWorldHint": True}},
        "parameters": {"sql": "SELECT 1"},
        "context": {"request_id": "req-1", "timestamp": "2025-01-02T03:04:05.678Z"},
    }


def test_without_a_principal_the_document_names_nobody() -> None:
    request = AuthorizationInput(ServerInfo("db"), ToolInfo("query", "db"), {})
    assert request.to_dict()["principal"] == {"id": None, "roles": [], "teams": []}


def test_a_custom_policy_path_is_the_data_api_path() -> None:
    authorizer = OPAAuthorizer(OPA + "/", "acme/tools/verdict")
    assert authorizer.endpoint == f"{OPA}/v1/data/acme/tools/verdict"


@pytest.mark.parametrize("path", ["", "/", "a//b", "a/b c", "data.sark.x?y", "a/../b", 5])
def test_a_policy_path_that_is_not_a_rule_path_is_a_configuration_error(path: Any) -> None:
    with pytest.raises(ConfigurationError, match="policy_path"):
        OPAAuthorizer(OPA, path)


@pytest.mark.parametrize("url", ["opa:8181", "ftp://opa", "http://user:pw@opa", "http://opa?x=1",
                                 None])
def test_a_bad_engine_url_is_a_configuration_error_without_its_credentials(url: Any) -> None:
    with pytest.raises(ConfigurationError) as info:
        OPAAuthorizer(url)
    assert "pw" not in str(info.value)


@pytest.mark.parametrize("timeout", [0, -1, float("nan"), float("inf"), True, "5"])
def test_a_bad_timeout_is_a_configuration_error(timeout: Any) -> None:
    with pytest.raises(ConfigurationError, match="timeout"):
        OPAAuthorizer(OPA, timeout=timeout)


# -- OPA: reading the answer -------------------------------------------------------------------


def test_a_decision_object_is_read_with_every_field(mock: responses.RequestsMock,
                                                     opa: OPAAuthorizer) -> None:
    mock.add(responses.POST, OPA_DECISION, json={
        "decision_id": "d-42", "result": {"allow": True, "reason": "developer may read",
                                          "filtered_parameters": {"sql": "SELECT 1"},
                                          "cache_ttl": 30, "extra": "ignored"}})
    decision = opa.authorize(make_input())
    assert decision == Decision(True, "developer may read", {"sql": "SELECT 1"}, 30, "d-42")


def test_an_undefined_result_is_a_deny_not_a_failure(mock: responses.RequestsMock,
                                                    opa: OPAAuthorizer) -> None:
    mock.add(responses.POST, OPA_DECISION, json={})
    decision = opa.authorize(make_input())
    assert (decision.allow, decision.cache_ttl) == (False, 0)
    assert decision.reason == "policy sark/gateway/decision is undefined for this call"


def test_an_undefined_result_is_a_deny_even_with_fail_open(mock: responses.RequestsMock) -> None:
    mock.add(responses.POST, OPA_DECISION, json={"decision_id": "d-1"})
    decision = OPAAuthorizer(OPA, fail_open=True).authorize(make_input())
    assert (decision.allow, decision.audit_id) == (False, "d-1")


def test_a_decision_object_without_allow_is_a_deny(mock: responses.RequestsMock,
                                                  opa: OPAAuthorizer) -> None:
    mock.add(responses.POST, OPA_DECISION, json={"result": {"reason": "no rule matched"}})
    assert opa.authorize(make_input()) == Decision(False, "no rule matched")


@pytest.mark.parametrize(
    ("answer", "problem"),
    [
        ({"result": True}, "got bool"),
        ({"result": None}, "got null"),
        ({"result": [{"allow": True}]}, "got list"),
        ({"result": "allow"}, "got str"),
        ({"result": {"allow": "true"}}, "'allow' must be a boolean"),
        ({"result": {"allow": 1}}, "'allow' must be a boolean"),
        ({"result": {"allow": True, "reason": 7}}, "'reason' must be a string"),
        ({"result": {"allow": True, "filtered_parameters": ["a"]}}, "filtered_parameters"),
        ({"result": {"allow": True, "filtered_parameters": "none"}}, "filtered_parameters"),
        ({"result": {"allow": True, "cache_ttl": -1}}, "cache_ttl"),
        ({"result": {"allow": True, "cache_ttl": 1.5}}, "cache_ttl"),
        ({"result": {"allow": True, "cache_ttl": True}}, "cache_ttl"),
        ([{"allow": True}], "not a JSON object"),
    ],
)
def test_a_malformed_decision_fails_closed(mock: responses.RequestsMock, opa: OPAAuthorizer,
                                           answer: Any, problem: str) -> None:
    mock.add(responses.POST, OPA_DECISION, json=answer)
    with pytest.raises(AuthorizationUnavailable) as info:
        opa.authorize(make_input())
    assert problem in str(info.value)
    assert info.value.url == OPA_DECISION and info.value.method == "POST"


@pytest.mark.parametrize("body", [b"<html>OPA</html>", b"", b'{"result": ', b"\xff\xfe"])
def test_an_answer_that_is_not_json_fails_closed_without_quoting_it(
        mock: responses.RequestsMock, opa: OPAAuthorizer, body: bytes) -> None:
    mock.add(responses.POST, OPA_DECISION, body=body, content_type="text/html")
    with pytest.raises(AuthorizationUnavailable, match="not JSON") as info:
        opa.authorize(make_input())
    assert info.value.status_code == 200
    assert "html>" not in str(info.value)


@pytest.mark.parametrize("status", [500, 503, 400, 404, 401, 302])
def test_a_non_2xx_status_fails_closed(mock: responses.RequestsMock, opa: OPAAuthorizer,
                                       status: int) -> None:
    mock.add(responses.POST, OPA_DECISION, status=status,
             json={"code": "internal_error", "message": "boom"},
             headers={"Location": "http://elsewhere"} if status == 302 else {})
    with pytest.raises(AuthorizationUnavailable, match=f"answered {status}") as info:
        opa.authorize(make_input())
    assert info.value.status_code == status
    assert len(mock.calls) == 1  # one attempt: no retry, no redirect followed


@pytest.mark.parametrize(
    ("failure", "message"),
    [
        (requests.exceptions.ConnectTimeout("connect timed out"), "did not answer within 5s"),
        (requests.exceptions.ReadTimeout("read timed out"), "did not answer within 5s"),
        (requests.exceptions.ConnectionError("refused"), "could not reach"),
    ],
)
def test_an_unreachable_or_slow_engine_fails_closed(
        mock: responses.RequestsMock, opa: OPAAuthorizer, failure: Exception,
        message: str) -> None:
    mock.add(responses.POST, OPA_DECISION, body=failure)
    with pytest.raises(AuthorizationUnavailable, match=message) as info:
        opa.authorize(make_input())
    assert info.value.__cause__ is failure


def test_the_timeout_is_the_smaller_of_the_authorizers_and_the_calls(
        mock: responses.RequestsMock) -> None:
    mock.add(responses.POST, OPA_DECISION, json={"result": {"allow": True}})
    mock.add(responses.POST, OPA_DECISION, json={"result": {"allow": True}})
    authorizer = OPAAuthorizer(OPA, timeout=3, cache=False)
    authorizer.authorize(make_input(), timeout=0.25)
    authorizer.authorize(make_input(), timeout=60)
    assert mock.calls[0].request.req_kwargs["timeout"] == (0.25, 0.25)
    assert mock.calls[1].request.req_kwargs["timeout"] == (2.0, 3.0)


def test_no_time_left_fails_closed_without_a_request(mock: responses.RequestsMock,
                                                    opa: OPAAuthorizer) -> None:
    with pytest.raises(AuthorizationUnavailable, match="no time left"):
        opa.authorize(make_input(), timeout=0)
    assert len(mock.calls) == 0


def test_an_oversize_answer_fails_closed(mock: responses.RequestsMock,
                                         opa: OPAAuthorizer) -> None:
    mock.add(responses.POST, OPA_DECISION, body=b"x", headers={"Content-Length": "99999999999"},
             auto_calculate_content_length=False)
    with pytest.raises(AuthorizationUnavailable, match="exceeds"):
        opa.authorize(make_input())


def test_parameters_json_cannot_carry_fail_closed(opa: OPAAuthorizer) -> None:
    with pytest.raises(AuthorizationUnavailable, match="not JSON"):
        opa.authorize(make_input({"when": object()}))
    with pytest.raises(AuthorizationUnavailable, match="not JSON"):
        OPAAuthorizer(OPA).authorize(make_input({"x": float("nan")}))  # via the cache key


# -- fail open ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "answer",
    [{"body": requests.exceptions.ConnectionError("refused")}, {"status": 500, "json": {}},
     {"json": {"result": {"allow": "yes"}}}, {"body": b"garbage"}],
    ids=["unreachable", "500", "malformed", "garbage"],
)
def test_fail_open_allows_and_warns_when_the_engine_cannot_decide(
        mock: responses.RequestsMock, caplog: pytest.LogCaptureFixture,
        answer: dict[str, Any]) -> None:
    mock.add(responses.POST, OPA_DECISION, **answer)
    caplog.set_level(logging.WARNING, "sark_sync.governance")
    decision = OPAAuthorizer(OPA, fail_open=True).authorize(make_input({"password": "hunter2"}))
    assert decision.allow and decision.cache_ttl == 0 and decision.filtered_parameters is None
    assert decision.reason.endswith("allowed because fail_open=True")
    assert [r.levelname for r in caplog.records] == ["WARNING"]
    assert "db/query" in caplog.text and "hunter2" not in caplog.text


def test_fail_open_never_turns_a_deny_into_an_allow(mock: responses.RequestsMock) -> None:
    mock.add(responses.POST, OPA_DECISION, json={"result": {"allow": False, "reason": "no"}})
    assert OPAAuthorizer(OPA, fail_open=True).authorize(make_input()) == Decision(False, "no")


def test_a_fail_open_allow_is_not_cached(mock: responses.RequestsMock) -> None:
    mock.add(responses.POST, OPA_DECISION, status=503)
    mock.add(responses.POST, OPA_DECISION, json={"result": {"allow": False, "cache_ttl": 60}})
    authorizer = OPAAuthorizer(OPA, fail_open=True)
    assert authorizer.authorize(make_input()).allow
    assert not authorizer.authorize(make_input()).allow
    assert len(mock.calls) == 2


# -- SARK --------------------------------------------------------------------------------------


def test_sark_posts_the_input_document_with_the_api_key(mock: responses.RequestsMock) -> None:
    mock.add(responses.POST, SARK_AUTHORIZE, json={"allow": True, "reason": "ok"})
    authorizer = SarkAuthorizer(SARK, api_key="sark-key")
    assert authorizer.authorize(make_input()) == Decision(True, "ok")
    assert mock.calls[0].request.headers["X-API-Key"] == "sark-key"
    assert sent(mock) == make_input().to_dict()
    assert "sark-key" not in repr(authorizer) and "[secure]" in repr(authorizer)


def test_sark_takes_its_api_key_from_the_environment(
        mock: responses.RequestsMock, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SARK_API_KEY", "env-key")
    mock.add(responses.POST, SARK_AUTHORIZE, json={"allow": False})
    assert not SarkAuthorizer(SARK).authorize(make_input()).allow
    assert mock.calls[0].request.headers["X-API-Key"] == "env-key"


def test_sark_an_empty_object_is_a_deny_and_its_audit_id_is_kept(
        mock: responses.RequestsMock) -> None:
    mock.add(responses.POST, SARK_AUTHORIZE, json={})
    mock.add(responses.POST, SARK_AUTHORIZE, json={"allow": False, "audit_id": "a-9"})
    authorizer = SarkAuthorizer(SARK, api_key="k", cache=False)
    assert authorizer.authorize(make_input()).allow is False
    assert authorizer.authorize(make_input()).audit_id == "a-9"


@pytest.mark.parametrize("answer", [{"status": 401, "json": {}}, {"json": {"allow": None}},
                                    {"json": ["allow"]}, {"body": b"<html/>"}])
def test_sark_failures_and_malformed_decisions_fail_closed(
        mock: responses.RequestsMock, answer: dict[str, Any]) -> None:
    mock.add(responses.POST, SARK_AUTHORIZE, **answer)
    with pytest.raises(AuthorizationUnavailable) as info:
        SarkAuthorizer(SARK, api_key="k").authorize(make_input())
    assert info.value.url == SARK_AUTHORIZE and "k" not in str(info.value).split("(")[0][-2:]


def test_sark_error_messages_never_show_the_api_key(mock: responses.RequestsMock) -> None:
    mock.add(responses.POST, SARK_AUTHORIZE, body=requests.exceptions.ConnectionError("x"))
    with pytest.raises(AuthorizationUnavailable) as info:
        SarkAuthorizer(SARK, api_key="sark-secret-key").authorize(make_input())
    assert "sark-secret-key" not in str(info.value) + repr(info.value)


# -- callables -----------------------------------------------------------------------------------


def test_a_callable_may_return_a_decision_or_a_mapping() -> None:
    seen: list[AuthorizationInput] = []

    def policy(request: AuthorizationInput) -> Any:
        seen.append(request)
        return {"allow": request.principal is not None, "reason": "r"}

    assert CallableAuthorizer(policy).authorize(make_input()) == Decision(True, "r")
    assert as_authorizer(lambda r: Decision(False, "x")).authorize(make_input()) == Decision(
        False, "x")
    assert seen == [make_input()]


@pytest.mark.parametrize("value", [True, None, "allow", {"allow": "yes"}])
def test_a_callable_returning_no_decision_fails_closed(value: Any) -> None:
    with pytest.raises(AuthorizationUnavailable, match="malformed decision"):
        CallableAuthorizer(lambda request: value).authorize(make_input())


def test_a_callable_that_raises_fails_closed_or_open() -> None:
    def broken(request: AuthorizationInput) -> Decision:
        raise KeyError("roles")

    with pytest.raises(AuthorizationUnavailable, match="raised KeyError") as info:
        CallableAuthorizer(broken).authorize(make_input())
    assert isinstance(info.value.__cause__, KeyError)
    assert CallableAuthorizer(broken, fail_open=True).authorize(make_input()).allow


def test_a_callable_may_raise_authorization_denied_itself() -> None:
    def deny(request: AuthorizationInput) -> Decision:
        raise AuthorizationDenied("not today", reason="weekend")

    with pytest.raises(AuthorizationDenied, match="not today"):
        CallableAuthorizer(deny, fail_open=True).authorize(make_input())


@pytest.mark.parametrize("value", [42, "opa", {"allow": True}])
def test_something_that_is_no_authorizer_is_a_configuration_error(value: object) -> None:
    with pytest.raises(ConfigurationError, match="authorizer must be"):
        as_authorizer(value)


def test_an_object_with_authorize_is_used_as_it_is() -> None:
    authorizer = OPAAuthorizer(OPA)
    assert as_authorizer(authorizer) is authorizer


# -- the decision cache --------------------------------------------------------------------------


def counting_policy(ttl: int) -> tuple[CallableAuthorizer, list[AuthorizationInput], FakeClock]:
    calls: list[AuthorizationInput] = []
    clock = FakeClock()

    def policy(request: AuthorizationInput) -> Decision:
        calls.append(request)
        return Decision(True, f"call {len(calls)}", cache_ttl=ttl)

    return CallableAuthorizer(policy, cache=DecisionCache(clock=clock)), calls, clock


def test_a_decision_is_reused_within_its_ttl_and_asked_again_after() -> None:
    authorizer, calls, clock = counting_policy(ttl=30)
    assert authorizer.authorize(make_input()).reason == "call 1"
    clock.now += 29.9
    assert authorizer.authorize(make_input()).reason == "call 1"
    clock.now += 0.1
    assert authorizer.authorize(make_input()).reason == "call 2"
    assert len(calls) == 2


def test_a_ttl_of_zero_is_never_cached() -> None:
    authorizer, calls, _ = counting_policy(ttl=0)
    authorizer.authorize(make_input())
    authorizer.authorize(make_input())
    assert len(calls) == 2 and authorizer.cache is not None and len(authorizer.cache) == 0


def test_the_request_id_and_timestamp_do_not_change_the_cache_key() -> None:
    authorizer, calls, _ = counting_policy(ttl=30)
    first = make_input()
    other = AuthorizationInput(first.server, first.tool, dict(first.parameters),
                               first.principal, "req-2", "2030-01-01T00:00:00.000Z")
    authorizer.authorize(first)
    authorizer.authorize(other)
    assert len(calls) == 1


@pytest.mark.parametrize(
    "changed",
    [
        make_input(principal=Principal("bob", ("developer",), ("data",))),
        make_input(principal=Principal("alice", ("admin",), ("data",))),
        make_input(principal=Principal("alice", ("developer",), ("ops",))),
        make_input({"sql": "SELECT 2"}),
        make_input({"sql": "SELECT 1", "limit": 1}),
        make_input(sensitive_params=("password", "token")),
        AuthorizationInput(ServerInfo("db"), make_input().tool, {"sql": "SELECT 1"},
                           make_input().principal),
    ],
    ids=["principal-id", "roles", "teams", "parameter-value", "parameter-added",
         "tool-metadata", "server-metadata"],
)
def test_a_different_principal_parameters_or_metadata_asks_again(
        changed: AuthorizationInput) -> None:
    authorizer, calls, _ = counting_policy(ttl=30)
    authorizer.authorize(make_input())
    authorizer.authorize(changed)
    assert len(calls) == 2


def test_the_key_ignores_the_order_of_keys_roles_and_teams() -> None:
    first = make_input({"a": 1, "b": {"x": 1, "y": 2}},
                       principal=Principal("alice", ("r1", "r2"), ("t1", "t2")))
    second = make_input({"b": {"y": 2, "x": 1}, "a": 1},
                        principal=Principal("alice", ("r2", "r1"), ("t2", "t1")))
    assert first.cache_key() == second.cache_key()


def test_the_cache_is_bounded_least_recently_used_first_out() -> None:
    clock = FakeClock()
    cache = DecisionCache(2, clock=clock)
    allow = Decision(True, cache_ttl=60)
    cache.put("a", allow)
    cache.put("b", allow)
    assert cache.get("a") is allow  # "b" is now the least recently used
    cache.put("c", allow)
    assert (cache.get("a"), cache.get("b"), cache.get("c")) == (allow, None, allow)
    assert len(cache) == 2


def test_an_expired_entry_is_dropped_when_met() -> None:
    clock = FakeClock()
    cache = DecisionCache(clock=clock)
    cache.put("a", Decision(True, cache_ttl=1))
    clock.now += 1
    assert cache.get("a") is None and len(cache) == 0


def test_cache_false_and_max_entries_zero_cache_nothing(mock: responses.RequestsMock) -> None:
    for _ in range(4):
        mock.add(responses.POST, OPA_DECISION, json={"result": {"allow": True, "cache_ttl": 60}})
    for authorizer in (OPAAuthorizer(OPA, cache=False),
                       OPAAuthorizer(OPA, cache=DecisionCache(0))):
        authorizer.authorize(make_input())
        authorizer.authorize(make_input())
    assert len(mock.calls) == 4


@pytest.mark.parametrize("size", [-1, 1.5, True])
def test_a_bad_cache_size_is_a_configuration_error(size: Any) -> None:
    with pytest.raises(ConfigurationError):
        DecisionCache(size)


def test_opa_decisions_are_cached_for_their_ttl(mock: responses.RequestsMock) -> None:
    mock.add(responses.POST, OPA_DECISION, json={"result": {"allow": True, "cache_ttl": 60}})
    authorizer = OPAAuthorizer(OPA)
    assert authorizer.authorize(make_input()) is authorizer.authorize(make_input())
    assert len(mock.calls) == 1


def test_a_closed_authorizer_reconnects_on_its_next_decision(
        mock: responses.RequestsMock) -> None:
    mock.add(responses.POST, OPA_DECISION, json={"result": {"allow": True}})
    mock.add(responses.POST, OPA_DECISION, json={"result": {"allow": True}})
    authorizer = OPAAuthorizer(OPA, cache=False)
    authorizer.authorize(make_input())
    authorizer.close()
    assert authorizer.authorize(make_input()).allow
