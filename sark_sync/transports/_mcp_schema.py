"""A tool's ``outputSchema`` as a bounded check, with ``jsonschema`` (the optional extra).

The schema comes from the server, and so does the value it checks: both may be hostile. So:

- before compiling, the schema is walked (without recursion): more than
  :data:`MAX_SCHEMA_NODES` values, deeper than :data:`MAX_SCHEMA_DEPTH`, or a ``$ref`` that is
  not local to the schema (``#...``) refuse it: nothing is ever fetched (the validator also
  gets an empty ``referencing`` registry, which retrieves nothing);
- a check counts keyword evaluations and gives up past :data:`MAX_STEPS` (a ``$ref`` loop or
  a schema whose branches multiply); Python's recursion limit ends any deeper loop;
- a ``pattern`` is evaluated only on strings of at most :data:`MAX_PATTERN_INPUT` characters
  and only if it looks linear (at most :data:`MAX_PATTERN_CHARS` characters, no
  backreference, no quantified group holding a quantifier or an alternation, at most two
  unbounded quantifiers): a regex from a peer could otherwise run for hours. Any other
  pattern is not evaluated (the value passes it). ``uniqueItems`` likewise past
  :data:`MAX_UNIQUE_ITEMS` items. ``format`` is not asserted (JSON Schema's default).

A refused or failed check is reported as the violation (a sentence), never as a hang.
Messages name the place in the value (``$.items[3].id``) and the keyword, never a value.
"""

from __future__ import annotations

import importlib
import re
import threading
from collections.abc import Mapping
from typing import Any, Callable, Optional

__all__ = ["MAX_SCHEMA_DEPTH", "MAX_SCHEMA_NODES", "MAX_STEPS", "compile_check",
           "load_jsonschema"]

MAX_SCHEMA_NODES = 10_000
MAX_SCHEMA_DEPTH = 64
MAX_STEPS = 100_000
MAX_PATTERN_INPUT = 1000
MAX_PATTERN_CHARS = 500
MAX_UNIQUE_ITEMS = 1000
MAX_PATH_CHARS = 200
REF_KEYS = ("$ref", "$dynamicRef", "$recursiveRef")

Check = Callable[[Any], Optional[str]]
_UNBOUNDED = re.compile(r"(?<!\\)(?:[*+]|\{\d*,\})")
_state = threading.local()


class _TooCostly(Exception):
    pass


def load_jsonschema() -> Any | None:
    """``jsonschema`` and ``referencing`` (4.18+), or None when they are not installed."""
    try:
        importlib.import_module("referencing")
        return importlib.import_module("jsonschema")
    except ImportError:
        return None


def compile_check(schema: Mapping[str, Any], jsonschema: Any) -> Check:
    """A check of values against ``schema``: the first violation as a sentence, or None."""
    refusal = _scan(schema)
    if refusal is not None:
        return lambda value: f"its outputSchema cannot be checked: {refusal}"
    try:
        base = jsonschema.validators.validator_for(
            schema, default=jsonschema.Draft202012Validator)
        base.check_schema(schema)
        validator = _extend(jsonschema, base)(
            schema, registry=importlib.import_module("referencing").Registry())
    except RecursionError:
        return lambda value: "its outputSchema cannot be checked: nested too deeply"
    except Exception as exc:  # SchemaError, or anything the schema made jsonschema raise
        reason = f"not a valid JSON Schema ({type(exc).__name__})"
        return lambda value: f"its outputSchema cannot be checked: {reason}"

    def check(value: Any) -> str | None:
        _state.steps = 0
        try:
            error = next(iter(validator.iter_errors(value)), None)
        except _TooCostly:
            return f"checking it took more than {MAX_STEPS} steps"
        except RecursionError:
            return "checking it recursed too deeply (a $ref loop?)"
        except Exception as exc:  # an unresolvable $ref, ...
            return f"it cannot be checked ({type(exc).__name__})"
        return None if error is None else _describe(error)

    return check


def _extend(jsonschema: Any, base: Any) -> Any:
    """``base`` whose every keyword counts a step, with the bounded regex and uniqueness."""
    keywords = dict(base.VALIDATORS)
    pattern, unique = keywords.get("pattern"), keywords.get("uniqueItems")
    if pattern is not None:
        keywords["pattern"] = _guarded_pattern(pattern)
    if unique is not None:
        keywords["uniqueItems"] = _guarded_unique(unique)
    counted = {name: _counted(function) for name, function in keywords.items()}
    return jsonschema.validators.extend(base, validators=counted)


def _counted(function: Callable[..., Any]) -> Callable[..., Any]:
    def keyword(validator: Any, value: Any, instance: Any, schema: Any) -> Any:
        _state.steps = getattr(_state, "steps", 0) + 1
        if _state.steps > MAX_STEPS:
            raise _TooCostly
        return function(validator, value, instance, schema)
    return keyword


def _guarded_pattern(function: Callable[..., Any]) -> Callable[..., Any]:
    def keyword(validator: Any, value: Any, instance: Any, schema: Any) -> Any:
        if isinstance(instance, str) and (len(instance) > MAX_PATTERN_INPUT
                                          or not safe_pattern(value)):
            return ()
        return function(validator, value, instance, schema)
    return keyword


def _guarded_unique(function: Callable[..., Any]) -> Callable[..., Any]:
    def keyword(validator: Any, value: Any, instance: Any, schema: Any) -> Any:
        if isinstance(instance, list) and len(instance) > MAX_UNIQUE_ITEMS:
            return ()
        return function(validator, value, instance, schema)
    return keyword


def safe_pattern(pattern: object) -> bool:
    """Whether a regex looks linear enough to run on a peer's string (see the module)."""
    if not isinstance(pattern, str) or len(pattern) > MAX_PATTERN_CHARS:
        return False
    if re.search(r"\\[1-9]|\(\?P=|\\k<", pattern) or len(_UNBOUNDED.findall(pattern)) > 2:
        return False
    stack: list[bool] = []  # per open group: holds a quantifier or an alternation
    i, in_class = 0, False
    while i < len(pattern):
        char = pattern[i]
        if char == "\\":
            i += 2
            continue
        if in_class:
            in_class = char != "]"
        elif char == "[":
            in_class = True
        elif char == "(":
            stack.append(False)
        elif char in "*+{|" and stack:
            stack[-1] = True
        elif char == ")" and stack:
            risky = stack.pop()
            if risky and i + 1 < len(pattern) and pattern[i + 1] in "*+{":
                return False
            if risky and stack:
                stack[-1] = True
        i += 1
    return True


def _scan(schema: Mapping[str, Any]) -> str | None:
    """Why the schema is refused before compiling (size, depth, a non-local $ref), or None."""
    todo: list[tuple[Any, int]] = [(schema, 1)]
    nodes = 0
    while todo:
        value, depth = todo.pop()
        nodes += 1
        if nodes > MAX_SCHEMA_NODES:
            return f"more than {MAX_SCHEMA_NODES} values"
        if depth > MAX_SCHEMA_DEPTH:
            return f"nested deeper than {MAX_SCHEMA_DEPTH}"
        if isinstance(value, Mapping):
            for key in REF_KEYS:
                ref = value.get(key)
                if key in value and not (isinstance(ref, str) and ref.startswith("#")):
                    return f"a {key} that is not local to the schema (nothing is fetched)"
            todo.extend((item, depth + 1) for item in value.values())
        elif isinstance(value, list):
            todo.extend((item, depth + 1) for item in value)
    return None


def _describe(error: Any) -> str:
    """Where and which keyword, never the value (it may echo a secret argument)."""
    path = "$"
    for part in error.absolute_path:
        path += f"[{part}]" if isinstance(part, int) else f".{str(part)[:40]}"
        if len(path) > MAX_PATH_CHARS:
            path = path[:MAX_PATH_CHARS] + "..."
            break
    keyword = str(error.validator)[:40]
    detail = ""
    if keyword == "required" and isinstance(error.instance, Mapping) and isinstance(
            error.validator_value, list):
        missing = [n for n in error.validator_value if n not in error.instance][:1]
        detail = f" (missing {str(missing[0])[:40]!r})" if missing else ""
    elif keyword == "type":
        detail = f" (expected {str(error.validator_value)[:60]})"
    return f"{path} fails {keyword!r}{detail}"
