"""Who a call is for, as the client's authorizer sees it.

The caller names the principal explicitly (``principal=Principal(...)``), or the client reads
it from the claims of the ``user_token`` it forwards: ``sub`` is the id, ``roles`` and
``teams`` lists of strings. The token is decoded WITHOUT verifying its signature: the client
holds no key, and needs none, because this decision is advisory. The gateway verifies the token
and enforces its own policy; the client's pre-check only refuses early (sparing the gateway and
the tool a call that would be denied) and filters parameters before they leave the process.
Never trust a principal read this way for anything else.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from typing import Any

from .._exceptions import ValidationError
from .._models import Principal

__all__ = ["principal_from_token", "resolve_principal"]

_SEGMENT = re.compile(r"[A-Za-z0-9_-]+\Z")


def principal_from_token(token: str) -> Principal:
    """The :class:`Principal` in the claims of a JWT (``sub``, ``roles``, ``teams``), read
    without verifying the token (see the module docstring).

    Raises :class:`ValidationError` if the token is not a compact JWT with a JSON object
    payload, has no string ``sub``, or has ``roles``/``teams`` that are not lists of strings.
    The message never contains the token.

    >>> principal_from_token("e30.eyJzdWIiOiJhbGljZSIsInJvbGVzIjpbImRldiJdfQ.c2ln")
    Principal(id='alice', roles=('dev',), teams=())
    """
    if not isinstance(token, str):
        raise ValidationError(f"user_token must be a str, not {type(token).__name__}")
    parts = token.split(".")
    if len(parts) != 3 or not all(_SEGMENT.match(part) for part in parts[:2]):
        raise ValidationError("user_token is not a JWT (three base64url segments)")
    claims = _payload(parts[1])
    subject = claims.get("sub")
    if not isinstance(subject, str) or not subject:
        raise ValidationError("user_token has no 'sub' claim: pass principal= to the call")
    return Principal(subject, _strings(claims, "roles"), _strings(claims, "teams"))


def _payload(segment: str) -> dict[str, Any]:
    try:
        raw = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
        claims = json.loads(raw.decode("utf-8"))
    except (binascii.Error, ValueError):  # UnicodeDecodeError and JSONDecodeError included
        raise ValidationError("user_token's payload is not base64url JSON") from None
    if not isinstance(claims, dict):
        raise ValidationError("user_token's payload is not a JSON object")
    return claims


def _strings(claims: dict[str, Any], name: str) -> tuple[str, ...]:
    value = claims.get(name)
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ValidationError(f"user_token's {name!r} claim must be a list of strings")
    return tuple(value)


def resolve_principal(principal: Principal | None, user_token: str | None) -> Principal | None:
    """The principal of a call: ``principal`` if given (it wins over the token), else the one
    in ``user_token``'s claims, else None. ``ValidationError`` for a principal that is not a
    :class:`Principal` or a malformed token."""
    if principal is not None:
        if not isinstance(principal, Principal):
            raise ValidationError(
                f"principal must be a sark_sync.Principal, not {type(principal).__name__}")
        return principal
    if user_token is None:
        return None
    return principal_from_token(user_token)
