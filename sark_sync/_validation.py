"""Argument checks made before any request: names, pages, parameters, header values.

A bad name must never become a request (no path injection, no confusing 404), and a
parameter that JSON cannot carry must fail here with a clear message, not as a half-sent body.
Messages name the argument and the rule, never the value of a parameter or credential.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from ._exceptions import ValidationError

__all__ = [
    "NAME_PATTERN",
    "check_arguments",
    "encode_arguments",
    "encode_invocation",
    "unencodable",
    "validate_command",
    "validate_env",
    "validate_header_value",
    "validate_name",
    "validate_page",
]

#: Server and tool names (DESIGN §4).
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
#: Largest page the gateway serves.
MAX_PAGE_SIZE = 1000


def validate_name(name: object, what: str) -> str:
    if not isinstance(name, str):
        raise ValidationError(f"{what} name must be a str, not {type(name).__name__}")
    if NAME_PATTERN.fullmatch(name) is None:
        shown = name if len(name) <= 64 else name[:64] + "..."
        raise ValidationError(
            f"invalid {what} name {shown!r}: names are 1-128 characters of letters, digits, "
            "'.', '_' and '-', starting with a letter or digit"
        )
    return name


def validate_page(page: object, page_size: object) -> None:
    if isinstance(page, bool) or not isinstance(page, int) or page < 1:
        raise ValidationError(f"page must be an int >= 1, got {page!r}")
    if (isinstance(page_size, bool) or not isinstance(page_size, int)
            or not 1 <= page_size <= MAX_PAGE_SIZE):
        raise ValidationError(f"page_size must be an int from 1 to {MAX_PAGE_SIZE}, got "
                              f"{page_size!r}")


def _check_mapping(parameters: Mapping[str, Any] | None) -> Mapping[str, Any]:
    if parameters is None:
        return {}
    if not isinstance(parameters, Mapping):
        raise ValidationError(f"parameters must be a mapping, not {type(parameters).__name__}")
    for key in parameters:
        if not isinstance(key, str):
            raise ValidationError(f"parameter names must be str, not {type(key).__name__}")
    return parameters


def unencodable(exc: TypeError | ValueError) -> ValidationError:
    """The error for parameters that ``json.dumps`` refused (the value is not shown)."""
    kind = "a value JSON cannot represent" if isinstance(exc, TypeError) else "NaN or infinity"
    return ValidationError(f"parameters contain {kind}: {type(exc).__name__}")


def _dumps(value: Any) -> str:
    try:
        return json.dumps(value, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise unencodable(exc) from None


def encode_invocation(server: str, tool: str, parameters: Mapping[str, Any] | None) -> bytes:
    """The JSON body of ``POST /api/v1/invoke``, or ValidationError for bad parameters."""
    body = {"server": server, "tool": tool, "parameters": _check_mapping(parameters)}
    return _dumps(body).encode()


def encode_arguments(arguments: Mapping[str, Any] | None) -> Mapping[str, Any]:
    """``arguments`` checked for a ``tools/call`` (a mapping JSON can carry)."""
    checked = _check_mapping(arguments)
    _dumps(checked)
    return checked


def check_arguments(arguments: Mapping[str, Any] | None) -> Mapping[str, Any]:
    """``arguments`` checked to be a mapping with str keys; whether JSON can carry the values
    is left to the encoder of the request, which raises :func:`unencodable`'s error, so the hot
    path of a stdio call serialises once."""
    return _check_mapping(arguments)


def validate_header_value(value: object, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise ValidationError(f"{what} must be a non-empty str")
    if any(ch in value for ch in "\r\n\x00") or not value.isprintable():
        raise ValidationError(f"{what} contains control characters")
    return value


def validate_command(command: object) -> list[str]:
    """A server's command line as a list. A string is refused rather than split: ``"python
    server.py"`` would otherwise run a program named exactly that, or be split wrongly."""
    if isinstance(command, (str, bytes)) or not isinstance(command, Sequence) or not command \
            or not all(isinstance(part, str) for part in command):
        raise ValidationError(
            "command must be a non-empty list of str, e.g. ['python', 'server.py']")
    return list(command)


def validate_env(env: object) -> dict[str, str]:
    """Extra environment variables for a child: a mapping of str to str (``None``: none).
    Checked here, where the mistake is made, rather than as a TypeError from ``Popen``."""
    if env is None:
        return {}
    if not isinstance(env, Mapping) or not all(
            isinstance(key, str) and isinstance(value, str) for key, value in env.items()):
        raise ValidationError("env must map str to str")
    return dict(env)
