"""HS256 JWT encoding and verification of the LocalGateway (sark_sync.testing.policy._jwt)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time

import pytest

from sark_sync.testing.policy._jwt import (
    JWTError,
    b64url_decode,
    b64url_encode,
    decode,
    encode,
    user_token,
)

SECRET = "unit-secret"
NOW = 1_700_000_000.0


def clock() -> float:
    return NOW


def _segment(value: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()


def _signed(header: object, payload: object, secret: str = SECRET) -> str:
    signing_input = f"{_segment(header)}.{_segment(payload)}"
    digest = hmac.new(secret.encode(), signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64url_encode(digest)}"


def test_encode_produces_a_standard_hs256_jws() -> None:
    token = encode({"sub": "alice", "exp": NOW + 60}, SECRET)
    header, payload, signature = token.split(".")
    assert "=" not in token
    assert json.loads(b64url_decode(header)) == {"alg": "HS256", "typ": "JWT"}
    assert json.loads(b64url_decode(payload)) == {"sub": "alice", "exp": NOW + 60}
    expected = hmac.new(SECRET.encode(), f"{header}.{payload}".encode(), hashlib.sha256).digest()
    assert b64url_decode(signature) == expected


def test_decode_returns_the_claims_of_a_token_signed_elsewhere() -> None:
    token = _signed({"alg": "HS256", "typ": "JWT"}, {"sub": "bob", "roles": ["admin"]})
    assert decode(token, SECRET, clock=clock) == {"sub": "bob", "roles": ["admin"]}


def test_round_trip_with_bytes_secret_and_unicode_claims() -> None:
    claims = {"sub": "zoë", "teams": ["données"], "n": 3}
    assert decode(encode(claims, b"\x00\xffkey"), b"\x00\xffkey", clock=clock) == claims


def test_wrong_secret_is_refused() -> None:
    token = encode({"sub": "alice"}, SECRET)
    with pytest.raises(JWTError, match="signature does not verify"):
        decode(token, "another-secret", clock=clock)


def test_tampered_payload_is_refused() -> None:
    header, _, signature = encode({"sub": "alice"}, SECRET).split(".")
    forged = f"{header}.{_segment({'sub': 'admin'})}.{signature}"
    with pytest.raises(JWTError, match="signature does not verify"):
        decode(forged, SECRET, clock=clock)


@pytest.mark.parametrize(
    "header",
    [{"alg": "none"}, {"alg": "HS512"}, {"alg": "RS256"}, {}, {"alg": "HS256", "crit": ["x"]}],
)
def test_other_algorithms_and_critical_headers_are_refused(header: dict[str, object]) -> None:
    with pytest.raises(JWTError):
        decode(_signed(header, {"sub": "alice"}), SECRET, clock=clock)


def test_unsigned_alg_none_token_is_refused() -> None:
    token = f"{_segment({'alg': 'none'})}.{_segment({'sub': 'alice'})}."
    with pytest.raises(JWTError, match="algorithm"):
        decode(token, SECRET, clock=clock)


@pytest.mark.parametrize(
    "token",
    ["", "abc", "a.b", "a.b.c.d", "a+b.c.d", "é.b.c", "x.y.z"],
)
def test_malformed_tokens_raise_jwt_error(token: str) -> None:
    with pytest.raises(JWTError):
        decode(token, SECRET, clock=clock)


def test_payload_that_is_not_an_object_is_refused() -> None:
    with pytest.raises(JWTError, match="not a JSON object"):
        decode(_signed({"alg": "HS256"}, ["sub", "alice"]), SECRET, clock=clock)


def test_expired_token_is_refused_and_exp_equal_to_now_counts_as_expired() -> None:
    with pytest.raises(JWTError, match="expired"):
        decode(encode({"exp": NOW - 1}, SECRET), SECRET, clock=clock)
    with pytest.raises(JWTError, match="expired"):
        decode(encode({"exp": NOW}, SECRET), SECRET, clock=clock)
    assert decode(encode({"exp": NOW + 1}, SECRET), SECRET, clock=clock) == {"exp": NOW + 1}


def test_leeway_tolerates_clock_skew_on_exp_and_nbf() -> None:
    expired = encode({"exp": NOW - 5}, SECRET)
    early = encode({"nbf": NOW + 5}, SECRET)
    assert decode(expired, SECRET, clock=clock, leeway=10) == {"exp": NOW - 5}
    assert decode(early, SECRET, clock=clock, leeway=10) == {"nbf": NOW + 5}


def test_not_yet_valid_token_is_refused() -> None:
    with pytest.raises(JWTError, match="not valid yet"):
        decode(encode({"nbf": NOW + 1}, SECRET), SECRET, clock=clock)


@pytest.mark.parametrize("claim", ["exp", "nbf"])
@pytest.mark.parametrize("value", ["1700000000", True, [1], {"t": 1}])
def test_non_numeric_time_claims_are_refused(claim: str, value: object) -> None:
    with pytest.raises(JWTError, match="not a number"):
        decode(encode({claim: value}, SECRET), SECRET, clock=clock)


def test_errors_never_contain_the_token_or_the_secret() -> None:
    token = encode({"sub": "alice", "exp": NOW - 1}, SECRET)
    for secret in (SECRET, "wrong"):
        with pytest.raises(JWTError) as info:
            decode(token, secret, clock=clock)
        assert token not in str(info.value)
        assert SECRET not in str(info.value)


def test_empty_secret_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="must not be empty"):
        encode({"sub": "alice"}, "")


def test_jwt_error_is_a_value_error() -> None:
    assert issubclass(JWTError, ValueError)


@pytest.mark.parametrize("data", [b"", b"\x00", b"ab", b"abc", bytes(range(256))])
def test_b64url_round_trip_without_padding(data: bytes) -> None:
    text = b64url_encode(data)
    assert "=" not in text and "+" not in text and "/" not in text
    assert b64url_decode(text) == data


@pytest.mark.parametrize("segment", ["a", "ab=c", "ab/c", "a b"])
def test_b64url_decode_refuses_other_alphabets_and_impossible_lengths(segment: str) -> None:
    with pytest.raises(JWTError):
        b64url_decode(segment)


def test_user_token_carries_the_user_then_issued_at_and_expiry_ttl_seconds_later() -> None:
    before = int(time.time())
    token = user_token(SECRET, "bob", ("viewer",), ["finance"], 60, {})
    after = int(time.time())
    claims = decode(token, SECRET)
    assert set(claims) == {"sub", "roles", "teams", "iat", "exp"}
    assert (claims["sub"], claims["roles"], claims["teams"]) == ("bob", ["viewer"], ["finance"])
    assert before <= claims["iat"] <= after
    assert claims["exp"] == claims["iat"] + 60


def test_user_token_without_ttl_never_expires_and_extra_claims_override() -> None:
    token = user_token(SECRET, "bob", (), (), None, {"sub": "carol", "tenant": "t1"})
    claims = decode(token, SECRET, clock=lambda: NOW + 10 * 365 * 86400)
    assert "exp" not in claims
    assert (claims["sub"], claims["tenant"], claims["roles"]) == ("carol", "t1", [])


def test_user_token_with_a_negative_ttl_is_already_expired() -> None:
    token = user_token(SECRET, "bob", (), (), -1, {})
    with pytest.raises(JWTError, match="expired"):
        decode(token, SECRET, leeway=0)
