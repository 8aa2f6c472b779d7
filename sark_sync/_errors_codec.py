"""How an error's context travels to another process, as JSON, and comes back.

Celery's JSON result backend stores an exception as its class (module and qualified name) and
its ``args``, and rebuilds it as ``cls(*args)``; ``pickle`` does the same through
``__reduce__``. So every :class:`~sark_sync.GatewayError` keeps its whole context in its
``args``: ``(message, state)``, where ``state`` is what :func:`encode` makes of its attributes
(only JSON types: str, numbers, bools, None, lists, str-keyed dicts) and :func:`decode` turns
back into the attributes.

A value JSON cannot hold is tagged ``{"__sark__": kind, ...}``: datetimes, tuples, frozensets,
mappings with other keys, nested exceptions (``DeadlineExceeded.last_error``) and the frozen
dataclasses of sark_sync (``ToolExecutionError.result``, a ``ToolResult``). Decoding rebuilds
only classes of sark_sync (and builtin exceptions) found among the modules already imported:
what a result backend hands back can never name another class to construct. Anything else
travels as its ``repr``, and values nested deeper than :data:`MAX_DEPTH` as a placeholder, so
encoding never fails, whatever a peer sent in an error's ``data``.

This module imports nothing of sark_sync: ``_exceptions`` builds on it.
"""

from __future__ import annotations

import builtins
import dataclasses
import sys
from collections.abc import Mapping
from datetime import datetime
from typing import Any

__all__ = ["EXCHANGE_MARK", "MAX_DEPTH", "STATUSES_MARK", "TAG", "decode", "encode", "restore",
           "state_of"]

#: The key that marks a tagged value.
TAG = "__sark__"
#: Deepest nesting encoded; below it a value becomes :data:`TOO_DEEP` (a peer's error data
#: may be nested thousands of levels, more than recursion allows).
MAX_DEPTH = 64
#: What a value nested deeper than :data:`MAX_DEPTH` travels as.
TOO_DEEP = "<nested too deeply>"

_SCALARS = (str, int, float, bool, type(None))


def encode(value: Any, depth: int = 0) -> Any:
    """``value`` as JSON types only (see the module docstring); never raises."""
    if depth > MAX_DEPTH:
        return TOO_DEEP
    depth += 1
    if isinstance(value, _SCALARS):
        return value
    if isinstance(value, datetime):
        return {TAG: "datetime", "value": value.isoformat()}
    if isinstance(value, list):
        return [encode(item, depth) for item in value]
    if isinstance(value, (tuple, frozenset, set)):
        kind = "tuple" if isinstance(value, tuple) else "frozenset"
        return {TAG: kind, "items": [encode(item, depth) for item in value]}
    if isinstance(value, Mapping):
        if TAG in value or not all(isinstance(key, str) for key in value):
            return {TAG: "mapping", "items": [[encode(key, depth), encode(item, depth)]
                                             for key, item in value.items()]}
        return {key: encode(item, depth) for key, item in value.items()}
    if isinstance(value, BaseException):
        return {TAG: "error", "type": _name(type(value)),
                "args": [encode(arg, depth) for arg in value.args]}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = {field.name: encode(getattr(value, field.name), depth)
                  for field in dataclasses.fields(value) if field.init}
        return {TAG: "object", "type": _name(type(value)), "fields": fields}
    try:
        return repr(value)
    except Exception:  # a repr that fails must not fail the error that carries the value
        return f"<{type(value).__name__}>"


def decode(value: Any, depth: int = 0) -> Any:
    """The value :func:`encode` made ``value`` from; what it does not recognise is returned
    as it is."""
    if depth > MAX_DEPTH:
        return TOO_DEEP
    depth += 1
    if isinstance(value, list):
        return [decode(item, depth) for item in value]
    if not isinstance(value, dict):
        return value
    kind = value.get(TAG)
    if kind is None:
        return {key: decode(item, depth) for key, item in value.items()}
    try:
        if kind == "datetime":
            return datetime.fromisoformat(value["value"])
        if kind == "tuple":
            return tuple(decode(item, depth) for item in value["items"])
        if kind == "frozenset":
            return frozenset(decode(item, depth) for item in value["items"])
        if kind == "mapping":
            return {decode(key, depth): decode(item, depth) for key, item in value["items"]}
        if kind == "error":
            return _error(value["type"], [decode(arg, depth) for arg in value["args"]])
        if kind == "object":
            return _object(value["type"], decode(value["fields"], depth))
    except (KeyError, TypeError, ValueError):
        pass
    return value  # not ours, or malformed: left as it came


def _name(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def _find(name: str) -> Any:
    """The class ``module:qualname`` names, if its module is sark_sync's (or the builtins)
    and already imported; else None. Nothing is imported here."""
    module_name, _, qualname = name.partition(":")
    if module_name != "builtins" and module_name.split(".")[0] != "sark_sync":
        return None
    found: Any = builtins if module_name == "builtins" else sys.modules.get(module_name)
    for part in qualname.split("."):
        found = getattr(found, part, None)
    return found if isinstance(found, type) else None


def _error(name: str, args: list[Any]) -> BaseException:
    cls = _find(name)
    if cls is not None and issubclass(cls, BaseException):
        try:
            error: BaseException = cls(*args)
            return error
        except Exception:  # an unknown shape: fall back to the plain form below
            pass
    # Not a class we may rebuild: keep its name and its first argument.
    first = args[0] if args and isinstance(args[0], str) else ""
    return Exception(f"{name.rpartition(':')[2]}: {first}")


def _object(name: str, fields: Any) -> Any:
    cls = _find(name)
    if hasattr(cls, "__dataclass_fields__") and isinstance(fields, dict):  # a dataclass
        return cls(**fields)
    return fields


#: Private attributes that travel too: how far the failed exchange got
#: (``resilience.mark_sent``) and the statuses of the retry loop it came through, if not the
#: default ones; the retry rule reads both.
EXCHANGE_MARK = "_sark_exchange"
STATUSES_MARK = "_sark_statuses"
_MARKS = (EXCHANGE_MARK, STATUSES_MARK)


def state_of(attributes: Mapping[str, Any]) -> dict[str, Any]:
    """The encoded state of an error's ``__dict__``: every public attribute that is set (the
    message excepted: it travels on its own) and the marks."""
    return {name: encode(value) for name, value in attributes.items()
            if value is not None and name != "message"
            and (not name.startswith("_") or name in _MARKS)}


def restore(attributes: dict[str, Any], state: object) -> None:
    """Set the attributes ``state`` holds, decoded; only those the error already has (and the
    marks), so a state can never add a foreign attribute nor replace the message. A state
    that is not a mapping (a result backend's ``repr`` of one it could not store) sets none."""
    if not isinstance(state, Mapping):
        return
    for name, value in state.items():
        if (name in attributes and name != "message") or name in _MARKS:
            attributes[name] = decode(value)
