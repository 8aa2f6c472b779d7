"""The ``"id"`` of a JSON-RPC line that could not be decoded, read from its raw bytes.

A peer controls every byte: an answer nested too deeply, with an integer of too many digits or
with invalid UTF-8 cannot be parsed, yet the call it answered should fail at once rather than
wait for its deadline. :func:`salvage_id` finds the top-level id by scanning tokens, never by
decoding, and gives up (None) rather than guess.
"""

from __future__ import annotations

import json
import re
from typing import Union

__all__ = ["salvage_id"]

RequestId = Union[int, str]

#: Tokens of JSON text that matter to find a top-level key: strings, brackets, separators,
#: numbers (whitespace and literals fall between matches).
_TOKEN = re.compile(rb'"(?:[^"\\]|\\.)*"|[\[\]{}:,]|-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?')
#: A top-level id written last, just before the closing brace.
_LAST_ID = re.compile(rb'"id"\s*:\s*(-?\d{1,18}|"[^"\\]{0,200}")\s*}\s*$')
#: Digits an id may have to be salvaged (ours are small counters; int() of a long run is slow).
_ID_DIGITS = 18


def _id_token(token: bytes) -> RequestId | None:
    if token[:1] == b'"':
        if len(token) > 202:
            return None
        try:
            text = json.loads(token)  # unescapes, and refuses invalid UTF-8
        except ValueError:
            return None
        return text if isinstance(text, str) else None
    digits = token.lstrip(b"-")
    return int(token) if digits.isdigit() and len(digits) <= _ID_DIGITS else None


def salvage_id(line: bytes | str, keep: int = 4096) -> RequestId | None:
    """The top-level ``"id"`` of a response that could not be decoded, read from its first
    ``keep`` bytes (at nesting depth 1 only) or its end (``"id": N}``); None when it cannot be
    found, or when the line has a top-level ``"method"`` (a request or notification of the
    peer, not an answer to one of ours). Never raises."""
    raw = line.encode("utf-8", "surrogatepass") if isinstance(line, str) else line
    head = raw[:keep]
    depth, key, after_colon, found = 0, None, False, None
    for match in _TOKEN.finditer(head):
        token = match.group()
        if token in (b"{", b"["):
            if depth == 1 and after_colon:
                key, after_colon = None, False
            depth += 1
        elif token in (b"}", b"]"):
            depth -= 1
            if depth <= 0:
                break
        elif depth != 1:
            continue
        elif token == b":":
            after_colon = key is not None
        elif token == b",":
            key, after_colon = None, False
        elif after_colon:
            if key == b'"method"':
                return None
            if key == b'"id"' and found is None:
                found = _id_token(token)
            key, after_colon = None, False
        elif token[:1] == b'"':
            key = token
    if b'"method"' in head and found is None and depth > 1:
        return None  # undecidable; never guess an answer out of a peer's own message
    if found is not None:
        return found
    tail = _LAST_ID.search(raw[-keep:])
    return _id_token(tail.group(1)) if tail else None
