"""Extra HTTP headers of a call (``headers=``) and of a client view (``with_options``).

They go on the gateway's requests and on a remote MCP server's ``tools/call`` (never on its
session's handshake, listings or notifications, which every caller shares). A local server
(stdio) has no headers: a call's ``headers=`` to one is refused, a view's are not sent.

Refused, with a :class:`ValidationError` that names the header and never quotes a value
(``Authorization`` and its kin are credentials): names that are not HTTP tokens, values
:func:`~sark_sync._validation.validate_header_value` refuses, more than :data:`MAX_HEADERS`,
the hop-by-hop and framing headers the HTTP layer owns (:data:`RESERVED`), the MCP
protocol's own, and ``Idempotency-Key`` (the ``idempotency_key=`` argument, which also
decides what may be retried).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from .._exceptions import ValidationError
from .._validation import validate_header_value

__all__ = ["MAX_HEADERS", "RESERVED", "check_headers", "merge_headers"]

#: Most extra headers a call or a view may carry.
MAX_HEADERS = 64
#: Longest header name, in characters.
MAX_NAME_LENGTH = 256
#: Headers a caller may not set (lower case): the connection's and the message framing's
#: (RFC 9110 7.6.1), which requests and urllib3 compute; the MCP transports' own; and the
#: idempotency key, which has its argument.
RESERVED = frozenset({
    "connection", "content-encoding", "content-length", "content-type", "expect", "host",
    "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade",
    "last-event-id", "mcp-method", "mcp-name", "mcp-protocol-version", "mcp-session-id",
    "idempotency-key",
})
#: RFC 9110 field names: a token of visible ASCII without separators.
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")


def check_headers(headers: object, what: str = "headers") -> dict[str, str]:
    """``headers`` (a mapping of str to str, or None) as a plain dict, each checked; see the
    module for what is refused."""
    if headers is None:
        return {}
    if not isinstance(headers, Mapping):
        raise ValidationError(f"{what} must be a mapping of str to str, not "
                              f"{type(headers).__name__}")
    if len(headers) > MAX_HEADERS:
        raise ValidationError(f"{what} may hold at most {MAX_HEADERS} headers, got "
                              f"{len(headers)}")
    checked: dict[str, str] = {}
    seen: set[str] = set()
    for name, value in headers.items():
        if not isinstance(name, str) or not 0 < len(name) <= MAX_NAME_LENGTH \
                or not _TOKEN.fullmatch(name):
            raise ValidationError(f"{what}: a header name must be an HTTP token (letters, "
                                  f"digits and !#$%&'*+.^_`|~-) of 1 to {MAX_NAME_LENGTH} "
                                  "characters")
        lower = name.lower()
        # One spelling of the request id, which the pipeline reads (and replaces) by name.
        name = "X-Request-ID" if lower == "x-request-id" else str.__str__(name)
        if lower in RESERVED or lower.startswith("mcp-param-"):
            hint = " (pass idempotency_key=)" if lower == "idempotency-key" else ""
            raise ValidationError(f"{what}: {name} is set by the client, not by the "
                                  f"caller{hint}")
        if lower in seen:
            raise ValidationError(f"{what}: {name} is given twice (names ignore case)")
        seen.add(lower)
        checked[name] = validate_header_value(value, f"{what}[{name!r}]")
    return checked


def merge_headers(base: Mapping[str, str], extra: Mapping[str, str]) -> dict[str, str]:
    """``base`` updated with ``extra``, names compared without case (``extra`` wins)."""
    if not extra:
        return dict(base)
    names = {name.lower() for name in extra}
    merged = {name: value for name, value in base.items() if name.lower() not in names}
    merged.update(extra)
    return merged
