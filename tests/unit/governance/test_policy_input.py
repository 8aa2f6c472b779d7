"""What the client's authorizer decides on and with: the principal read from a user token,
the strict parsing of a decision, and the paths a filtering policy removed."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from support import unsigned_jwt

from sark_sync import Decision, Principal, ValidationError
from sark_sync.governance import principal_from_token
from sark_sync.governance._decision import removed_paths, utc_timestamp
from sark_sync.governance._principal import resolve_principal
from sark_sync.testing.policy import _jwt

# -- the principal in a user token ---------------------------------------------------------------


def test_sub_roles_and_teams_of_a_gateway_token_are_the_principal() -> None:
    token = _jwt.encode({"sub": "alice", "roles": ["developer", "oncall"], "teams": ["data"],
                         "exp": 1}, "any-secret")
    assert principal_from_token(token) == Principal("alice", ("developer", "oncall"), ("data",))


def test_the_signature_is_not_checked_the_claims_are_advisory() -> None:
    token = _jwt.encode({"sub": "mallory", "roles": ["admin"]}, "a-secret-we-do-not-know")
    forged = token.rsplit(".", 1)[0] + ".AAAA"
    assert principal_from_token(forged) == Principal("mallory", ("admin",), ())


def test_missing_roles_and_teams_are_empty() -> None:
    assert principal_from_token(unsigned_jwt({"sub": "svc"})) == Principal("svc")


@pytest.mark.parametrize(
    "token",
    [
        "not-a-jwt",
        "a.b",
        "a.b.c.d",
        "a.b!.c",
        "e30.%%%.c2ln",
        "e30..c2ln",
        unsigned_jwt(b"\xff\xfe not utf-8"),
        unsigned_jwt(b"not json"),
        unsigned_jwt(["sub", "alice"]),
        unsigned_jwt({"roles": ["admin"]}),
        unsigned_jwt({"sub": ""}),
        unsigned_jwt({"sub": 42}),
        unsigned_jwt({"sub": "alice", "roles": "admin"}),
        unsigned_jwt({"sub": "alice", "teams": ["data", 7]}),
    ],
)
def test_a_malformed_token_is_a_validation_error_that_never_shows_it(token: str) -> None:
    with pytest.raises(ValidationError, match="user_token") as info:
        principal_from_token(token)
    shown = str(info.value) + repr(info.value)
    assert token not in shown
    assert all(part not in shown for part in token.split(".") if len(part) > 4)


def test_an_explicit_principal_wins_over_the_token() -> None:
    explicit = Principal("bob", ("admin",))
    assert resolve_principal(explicit, "not even a jwt") is explicit


def test_no_principal_and_no_token_is_nobody() -> None:
    assert resolve_principal(None, None) is None


def test_a_principal_that_is_not_a_principal_is_a_validation_error() -> None:
    with pytest.raises(ValidationError, match=r"principal must be a sark_sync\.Principal"):
        resolve_principal({"id": "alice"}, None)  # type: ignore[arg-type]


# -- decisions -------------------------------------------------------------------------------------


def test_a_decision_object_with_only_allow_takes_the_defaults() -> None:
    assert Decision.from_dict({"allow": True}) == Decision(True, "", None, 0, None)


def test_empty_filtered_parameters_are_kept_not_taken_for_null() -> None:
    decision = Decision.from_dict({"allow": True, "filtered_parameters": {}})
    assert decision.filtered_parameters == {}
    assert Decision.from_dict({"allow": True, "filtered_parameters": None}
                              ).filtered_parameters is None


def test_the_decisions_own_audit_id_wins_over_the_engines() -> None:
    assert Decision.from_dict({"allow": False, "audit_id": "own"}, audit_id="opa").audit_id == \
        "own"
    assert Decision.from_dict({"allow": False}, audit_id="opa").audit_id == "opa"


@pytest.mark.parametrize(
    "fields",
    [{"allow": "false"}, {"allow": True, "reason": ["x"]}, {"allow": True, "cache_ttl": "60"},
     {"allow": True, "filtered_parameters": {1: "a"}}, {"allow": True, "audit_id": 5}],
)
def test_constructing_a_decision_checks_every_field(fields: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        Decision(**fields)


def test_coerce_takes_a_decision_as_it_is() -> None:
    decision = Decision(True)
    assert Decision.coerce(decision) is decision


def test_the_repr_of_a_decision_hides_sensitive_filtered_values() -> None:
    decision = Decision(True, "ok", {"user": "alice", "db": {"password": "hunter2"}})
    assert "hunter2" not in repr(decision) and "alice" in repr(decision)


# -- what filtering removed ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("before", "after", "removed"),
    [
        ({"q": 1, "password": "x"}, {"q": 1}, ["password"]),
        ({"q": 1, "password": "x"}, {}, ["q", "password"]),
        ({"db": {"host": "h", "password": "x"}}, {"db": {"host": "h"}}, ["db.password"]),
        ({"db": {"password": "x"}}, {}, ["db"]),
        ({"items": [{"token": "t", "n": 1}, {"n": 2}]}, {"items": [{"n": 1}, {"n": 2}]},
         ["items[0].token"]),
        ({"items": [{"token": "t"}, {"n": 2}]}, {"items": [{"n": 2}]}, []),
        ({"password": "x"}, {"password": "[secure]"}, []),
        ({"a": 1}, {"a": 1, "added": 2}, []),
        ({}, {}, []),
    ],
)
def test_removed_paths_names_every_removed_key_at_any_depth(
        before: dict[str, Any], after: dict[str, Any], removed: list[str]) -> None:
    assert removed_paths(before, after) == removed


def test_timestamps_are_rfc_3339_utc_with_milliseconds() -> None:
    moment = datetime(2025, 1, 2, 5, 4, 5, 678900, tzinfo=timezone(timedelta(hours=2)))
    assert utc_timestamp(moment) == "2025-01-02T03:04:05.678Z"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", utc_timestamp())
