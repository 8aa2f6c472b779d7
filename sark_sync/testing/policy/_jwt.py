"""HS256 JSON Web Tokens with the standard library only.

The LocalGateway signs and verifies end-user tokens (``Authorization: Bearer <jwt>``) with a
shared secret. Only the compact serialisation with ``{"alg": "HS256"}`` is accepted: any other
algorithm, ``"none"`` included, is refused before the signature is looked at, so a token can
never choose how it is verified.

Contract:

- :func:`encode` returns ``header.payload.signature`` in unpadded base64url;
  :func:`user_token` the claims of an end user's token as the LocalGateway issues them.
- :func:`decode` returns the claims or raises :class:`JWTError` (a ``ValueError``) for a
  malformed token, a foreign algorithm, a bad signature, a non-object payload, an expired
  token (``exp <= now - leeway``) or one not yet valid (``nbf > now + leeway``).
- Error messages never contain the token or the secret.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import time
from collections.abc import Iterable, Mapping
from typing import Any, Callable, Union

__all__ = ["JWTError", "b64url_decode", "b64url_encode", "decode", "encode", "user_token"]

#: The only algorithm produced and accepted.
ALGORITHM = "HS256"

_SEGMENT = re.compile(r"[A-Za-z0-9_-]*\Z")

Secret = Union[str, bytes]


class JWTError(ValueError):
    """A token that is malformed, wrongly signed, expired or not yet valid."""


def b64url_encode(data: bytes) -> str:
    """Encode ``data`` as unpadded base64url text."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(segment: str) -> bytes:
    """Decode unpadded base64url text; raise :class:`JWTError` on any other alphabet."""
    if not _SEGMENT.match(segment) or len(segment) % 4 == 1:
        raise JWTError("token segment is not base64url")
    try:
        return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    except (binascii.Error, ValueError) as exc:
        raise JWTError("token segment is not base64url") from exc


def _key(secret: Secret) -> bytes:
    key = secret.encode("utf-8") if isinstance(secret, str) else bytes(secret)
    if not key:
        raise ValueError("the JWT secret must not be empty")
    return key


def _sign(signing_input: bytes, secret: Secret) -> bytes:
    return hmac.new(_key(secret), signing_input, hashlib.sha256).digest()


def _json_segment(value: Mapping[str, Any]) -> str:
    return b64url_encode(json.dumps(value, separators=(",", ":"), sort_keys=True).encode("utf-8"))


def encode(claims: Mapping[str, Any], secret: Secret) -> str:
    """Return an HS256 JWT carrying ``claims``.

    Raises ``ValueError`` for an empty secret and ``TypeError`` for claims that are not JSON.

    >>> token = encode({"sub": "alice"}, "s3cret")
    >>> decode(token, "s3cret")["sub"]
    'alice'
    """
    signing_input = f"{_json_segment({'alg': ALGORITHM, 'typ': 'JWT'})}.{_json_segment(claims)}"
    signature = _sign(signing_input.encode("ascii"), secret)
    return f"{signing_input}.{b64url_encode(signature)}"


def user_token(secret: Secret, subject: str, roles: Iterable[str], teams: Iterable[str],
               ttl: float | None, extra_claims: Mapping[str, Any]) -> str:
    """An end user's token: ``sub``, ``roles``, ``teams``, ``iat`` and, unless ``ttl`` is
    None, ``exp`` ``ttl`` seconds later (negative: already expired); ``extra_claims`` last,
    so they may override the others."""
    now = int(time.time())
    claims: dict[str, Any] = {"sub": subject, "roles": list(roles), "teams": list(teams),
                              "iat": now}
    if ttl is not None:
        claims["exp"] = now + int(ttl)
    claims.update(extra_claims)
    return encode(claims, secret)


def _object(segment: str, what: str) -> dict[str, Any]:
    try:
        value = json.loads(b64url_decode(segment).decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise JWTError(f"token {what} is not JSON") from exc
    if not isinstance(value, dict):
        raise JWTError(f"token {what} is not a JSON object")
    return value


def _numeric_claim(claims: Mapping[str, Any], name: str) -> float | None:
    value = claims.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise JWTError(f"token claim {name!r} is not a number")
    return float(value)


def decode(
    token: str,
    secret: Secret,
    *,
    leeway: float = 0.0,
    clock: Callable[[], float] = time.time,
) -> dict[str, Any]:
    """Verify ``token`` with ``secret`` and return its claims.

    ``leeway`` (seconds, default 0) tolerates clock skew on ``exp`` and ``nbf``; ``clock``
    returns the current Unix time and is injectable for tests.

    Raises :class:`JWTError` for every kind of invalid token.
    """
    parts = token.split(".")
    if len(parts) != 3:
        raise JWTError("token is not a compact JWS (three segments)")
    if not all(_SEGMENT.match(part) for part in parts):
        raise JWTError("token segment is not base64url")
    header_segment, payload_segment, signature_segment = parts
    header = _object(header_segment, "header")
    if header.get("alg") != ALGORITHM:
        raise JWTError("token algorithm is not HS256")
    if "crit" in header:
        raise JWTError("token has critical header parameters")
    signature = b64url_decode(signature_segment)
    expected = _sign(f"{header_segment}.{payload_segment}".encode("ascii"), secret)
    if not hmac.compare_digest(signature, expected):
        raise JWTError("token signature does not verify")
    claims = _object(payload_segment, "payload")
    now = clock()
    expires = _numeric_claim(claims, "exp")
    if expires is not None and expires <= now - leeway:
        raise JWTError("token has expired")
    not_before = _numeric_claim(claims, "nbf")
    if not_before is not None and not_before > now + leeway:
        raise JWTError("token is not valid yet")
    return claims
