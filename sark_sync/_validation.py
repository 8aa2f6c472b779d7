"""Argument checks made before any request: names, pages, parameters, header values.

A bad name must never become a request (no path injection, no confusing 404), and a
parameter that JSON cannot carry must fail here with a clear message, not as a half-sent body.
Messages name the argument and the rule, never the value of a parameter or credential: a
header value that breaks the rule is described by what is wrong and where (``user_token has a
control character at index 12``), never by its characters.

What a caller passes is taken at face value only as far as the builtin types go: a ``str``
subclass is read as the plain ``str`` it holds (its ``__str__``, ``__eq__`` or ``__hash__``
never reach a URL, a header or a dict key), and foreign exceptions raised while reading a
caller's mapping become :class:`ValidationError` naming only their type.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from ._exceptions import ValidationError

__all__ = [
    "MAX_HEADER_VALUE_LENGTH",
    "MAX_PAGE",
    "MAX_PAGE_SIZE",
    "NAME_PATTERN",
    "check_arguments",
    "decode_json",
    "describe",
    "encode_arguments",
    "encode_invocation",
    "header_value_problem",
    "integer",
    "mapping",
    "object_of",
    "string",
    "strings",
    "timestamp",
    "json_copy",
    "plain_str",
    "unencodable",
    "validate_command",
    "validate_env",
    "validate_header_value",
    "validate_name",
    "validate_page",
]

#: Server and tool names: what the gateway accepts in a URL path segment, so a name can never
#: inject a path (docs/gateway/ERROR_HANDLING.md, "The call pipeline").
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
#: Largest page the gateway serves.
MAX_PAGE_SIZE = 1000
#: Highest page number: ``(page - 1) * page_size`` stays an offset a gateway can serve (10^9).
MAX_PAGE = 1_000_000
#: Longest header value accepted (API key, user token, idempotency key), in characters;
#: common servers refuse a header line past 8 KiB, so a longer value could only fail later.
MAX_HEADER_VALUE_LENGTH = 8192

#: What a header value must be (RFC 9110 field-value, restricted to visible ASCII).
HEADER_RULE = (f"header values are 1 to {MAX_HEADER_VALUE_LENGTH} visible ASCII characters, "
               "with spaces allowed only between them")
_HEADER_VALUE = re.compile(r"[\x21-\x7e](?:[\x20-\x7e]*[\x21-\x7e])?")
#: Characters of a value shown in a message, at most (names, bad page sizes).
_SHOWN = 64


def plain_str(value: str) -> str:
    """``value`` as an exact ``str``: a subclass's overridden methods are left behind."""
    return value if type(value) is str else str.__str__(value)


def describe(value: object) -> str:
    """A short, safe rendering of a rejected number or small value for a message: exact
    numbers by value (a huge int by its size, since its repr may itself raise), anything
    else by its type."""
    if isinstance(value, bool) or value is None:
        return repr(value)
    if isinstance(value, int):
        number = int.__int__(value)
        bits = number.bit_length()
        return repr(number) if bits <= 64 else f"an int of {bits} bits"
    if isinstance(value, float):
        return repr(float.__float__(value))
    return f"a {type(value).__name__}"


def validate_name(name: object, what: str) -> str:
    """``name`` as a plain str if it is a valid server or tool name, else ValidationError."""
    if not isinstance(name, str):
        raise ValidationError(f"{what} name must be a str, not {type(name).__name__}")
    name = plain_str(name)
    if NAME_PATTERN.fullmatch(name) is None:
        shown = name if len(name) <= _SHOWN else name[:_SHOWN] + "..."
        raise ValidationError(
            f"invalid {what} name {shown!r}: names are 1-128 characters of letters, digits, "
            "'.', '_' and '-', starting with a letter or digit"
        )
    return name


def validate_page(page: object, page_size: object) -> tuple[int, int]:
    """``(page, page_size)`` as plain ints if ``page`` is from 1 to :data:`MAX_PAGE` and
    ``page_size`` from 1 to :data:`MAX_PAGE_SIZE`, else ValidationError."""
    return (_bounded_int("page", page, MAX_PAGE),
            _bounded_int("page_size", page_size, MAX_PAGE_SIZE))


def _bounded_int(name: str, value: object, maximum: int) -> int:
    number = int.__int__(value) if isinstance(value, int) and not isinstance(value, bool) \
        else None
    if number is None or not 1 <= number <= maximum:
        raise ValidationError(f"{name} must be an int from 1 to {maximum:,}, got "
                              f"{describe(value)}")
    return number


def _check_mapping(parameters: Mapping[str, Any] | None) -> Mapping[str, Any]:
    if parameters is None:
        return {}
    if not isinstance(parameters, Mapping):
        raise ValidationError(f"parameters must be a mapping, not {type(parameters).__name__}")
    try:
        if not isinstance(parameters, dict):  # json encodes dicts only
            parameters = dict(parameters.items())
        for key in parameters:
            if not isinstance(key, str):
                raise ValidationError(f"parameter names must be str, not {type(key).__name__}")
    except ValidationError:
        raise
    except Exception as exc:  # a caller's mapping whose iteration raises
        raise ValidationError(
            f"parameters could not be read: iterating them raised {type(exc).__name__}"
        ) from None
    return parameters


def unencodable(exc: BaseException) -> ValidationError:
    """The error for parameters that ``json.dumps`` refused (the value is never shown).

    ``RecursionError`` means nesting deeper than the interpreter's recursion limit; a
    ``ValueError`` a circular reference, NaN or infinity, or an int too long to print.
    """
    text = str(exc) if isinstance(exc, ValueError) else ""
    if isinstance(exc, RecursionError):
        return ValidationError(
            "parameters are nested too deeply to encode as JSON (deeper than the interpreter's "
            "recursion limit): RecursionError")
    if "ircular reference" in text:
        kind = "a circular reference"
    elif "Out of range float" in text:
        kind = "NaN or infinity"
    elif isinstance(exc, (TypeError, ValueError)):
        kind = "a value JSON cannot represent"
    else:
        return ValidationError(
            f"parameters could not be encoded as JSON: reading them raised {type(exc).__name__}")
    return ValidationError(f"parameters contain {kind}: {type(exc).__name__}")


def _dumps(value: Any) -> str:
    try:
        return json.dumps(value, separators=(",", ":"), allow_nan=False)
    except Exception as exc:  # RecursionError included; a caller's object may raise anything
        raise unencodable(exc) from None


def decode_json(text: str | bytes) -> Any:
    """JSON the client encoded from the caller's values, decoded again (a copy as the peer
    will read it); ``RecursionError`` becomes :func:`unencodable`'s error, since decoding may
    run deeper in the stack than encoding did."""
    try:
        return json.loads(text)
    except RecursionError as exc:
        raise unencodable(exc) from None


def json_copy(value: Any) -> Any:
    """A deep copy of JSON-encodable ``value`` made through JSON (what the peer will get), or
    :func:`unencodable`'s error."""
    return decode_json(_dumps(value))


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
    if type(arguments) is dict:  # most calls: no ABC check, no copy
        for key in arguments:
            if type(key) is not str:
                return _check_mapping(arguments)  # it says what is wrong
        return arguments
    return _check_mapping(arguments)


def header_value_problem(value: str) -> str | None:
    """What makes ``value`` unfit for an HTTP header (None: nothing), worded to follow the
    argument's name. Positions are given as indexes; characters never are.

    The rule, stricter than RFC 9110's field-value: visible ASCII (``!`` to ``~``), spaces
    inside only, no tab, no obs-text (bytes 0x80-0xFF, which requests would send as Latin-1
    and a server may read otherwise), 1 to :data:`MAX_HEADER_VALUE_LENGTH` characters.
    """
    if not value:
        return "is empty"
    if len(value) > MAX_HEADER_VALUE_LENGTH:
        return f"is longer than {MAX_HEADER_VALUE_LENGTH} characters"
    if _HEADER_VALUE.fullmatch(value) is not None:
        return None
    if value[0].isspace():
        return "starts with whitespace"
    if value[-1].isspace():
        return "ends with whitespace"
    for index, char in enumerate(value):
        code = ord(char)
        if code < 0x20 or code == 0x7F:
            return f"has a control character at index {index}"
        if code > 0x7E:
            return f"has a non-ASCII character at index {index}"
    return "is not a valid header value"  # unreachable: the pattern covers every other case


def validate_header_value(value: object, what: str) -> str:
    """``value`` as a plain str if it may be sent as a header value, else ValidationError
    saying what is wrong, never quoting it."""
    if not isinstance(value, str):
        raise ValidationError(f"{what} must be a non-empty str, not {type(value).__name__}")
    value = plain_str(value)
    problem = header_value_problem(value)
    if problem is not None:
        raise ValidationError(f"{what} {problem}; {HEADER_RULE}")
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


# -- the fields of a peer's JSON object ----------------------------------------------------------
# Read leniently and by name (:mod:`._models`): a missing optional field takes its default, a
# value of the wrong type raises ValueError naming the field, so that one malformed item is
# skipped and the rest of a page kept.

def mapping(data: object, what: str) -> Mapping[str, Any]:
    if not isinstance(data, Mapping):
        raise ValueError(f"{what} must be a JSON object, got {type(data).__name__}")
    return data


def string(data: Mapping[str, Any], key: str, default: str | None = None, *, required: bool = False
         ) -> Any:
    value = data.get(key)
    if value is None:
        if required:
            raise ValueError(f"missing required field {key!r}")
        return default
    if not isinstance(value, str):
        raise ValueError(f"field {key!r} must be a string, got {type(value).__name__}")
    return value


def integer(data: Mapping[str, Any], key: str, default: int = 0) -> int:
    value = data.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"field {key!r} must be an integer, got {type(value).__name__}")
    return value


def strings(data: Mapping[str, Any], key: str) -> tuple[str, ...]:
    value = data.get(key)
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"field {key!r} must be a list of strings")
    return tuple(value)


def object_of(data: Mapping[str, Any], key: str) -> dict[str, Any] | None:
    value = data.get(key)
    if value is not None and not isinstance(value, Mapping):
        raise ValueError(f"field {key!r} must be an object")
    return None if value is None else dict(value)


_FRACTION = re.compile(r"\.(\d+)")


def timestamp(data: Mapping[str, Any], key: str) -> datetime | None:
    value = string(data, key)
    if value is None:
        return None
    text = value[:-1] + "+00:00" if value.endswith(("Z", "z")) else value
    # Python < 3.11 parses only 3 or 6 fractional digits; RFC 3339 allows any number.
    text = _FRACTION.sub(lambda m: "." + (m.group(1) + "000000")[:6], text)
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"field {key!r} is not an RFC 3339 timestamp: {value!r}") from None
