"""The LocalGateway's built-in rules: ``sark_sync/policies/gateway.rego`` in Python.

Why a second implementation: the LocalGateway must enforce the shipped policy where no OPA
runs (a developer's laptop, a user's test suite, ``sark-sync demo``), with the standard
library only. It is a port, rule for rule, of the Rego file, undefined values included (a rule
whose operand is missing does not fire, as in OPA), and gives the same decision object, reason
strings and all; ``tests/integration/gateway/test_builtin_policy.py`` checks that against
the real OPA engine over the Rego tests' inputs and thousands of generated ones, and that the
tables here are the Rego file's. Change both together. The header of the Rego file explains
the rules.

Where Go and Python differ, Go wins: ``lower`` maps one character to one (``"İ"`` → ``"i"``),
``trim_space`` trims Unicode White_Space only, ``\\s`` is ``[\\t\\n\\f\\r ]`` and ``$`` is
the end of the text (RE2), and ``%v`` prints values as OPA's ``sprintf`` does.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from ...governance import AuthorizationInput, CallableAuthorizer, DecisionCache

__all__ = ["BuiltinPolicy", "evaluate"]

LEVELS = {"low": 1, "medium": 2, "high": 3, "critical": 4}
ROLE_CLEARANCE = {
    "viewer": 1, "developer": 2, "analyst": 2, "operator": 2,
    "senior_developer": 3, "lead": 3, "security": 3, "admin": 4,
}
TEAM_EXEMPT_ROLES = frozenset({"admin"})
ALLOW_CACHE_TTL = {"low": 300, "medium": 60, "high": 30, "critical": 0}
SENSITIVE_KEY_SUFFIXES = (
    "password", "passwd", "passphrase", "secret", "token", "apikey", "credential",
    "credentials", "privatekey", "accesskey", "authorization", "cookie",
)
ACTION = "gateway:tool:invoke"

# RE2's \s and \S, which Python's differ from (\v, Unicode spaces).
_S, _NS = r"[\t\n\f\r ]", r"[^\t\n\f\r ]"
_SQL_FLAGS = re.ASCII
DESTRUCTIVE_STATEMENTS = {
    "DROP": re.compile(
        rf"drop{_S}+(table|database|schema|view|materialized{_S}+view|index|sequence|function"
        r"|procedure|trigger|type|user|role)\b", _SQL_FLAGS),
    "TRUNCATE": re.compile(
        rf"truncate{_S}+(table{_S}+)?(only{_S}+)?[a-z0-9_.\"\x60\[\]]+{_S}*"
        r"(,|\Z|\b(cascade|restrict|restart|continue)\b)", _SQL_FLAGS),
    "ALTER": re.compile(
        rf"alter{_S}+(table|database|schema|view|index|sequence|function|procedure|type|user"
        r"|role|system)\b", _SQL_FLAGS),
}
UNBOUNDED_STATEMENTS = {
    "DELETE without WHERE": re.compile(rf"delete{_S}+from{_S}", _SQL_FLAGS),
    "UPDATE without WHERE": re.compile(rf"update{_S}+{_NS}+{_S}+set{_S}", _SQL_FLAGS),
}
_WHERE = re.compile(r"\bwhere\b", _SQL_FLAGS)
_BLOCK_COMMENT = re.compile(r"/\*.*?\*/", re.DOTALL)
_LINE_COMMENT = re.compile(r"--[^\n]*")
_KEY_SEPARATORS = re.compile(rf"(?:{_S}|[_.\-])+")
# Go's unicode.IsSpace: what strings.TrimSpace trims.
_GO_SPACE = "\t\n\v\f\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007" \
            "\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"

_Undefined = object()  # an undefined Rego value


def evaluate(document: object) -> dict[str, Any]:
    """``data.sark.gateway.decision`` for the input ``document``: always a decision object
    ``{"allow", "reason", "filtered_parameters", "cache_ttl"}``."""
    policy = _Evaluation(document)
    deny = policy.deny()
    if deny:
        return {"allow": False, "reason": "denied: " + "; ".join(sorted(deny)),
                "filtered_parameters": None, "cache_ttl": 0}
    return policy.allow()


class BuiltinPolicy(CallableAuthorizer):
    """The built-in rules as an authorizer (``LocalGateway(policy="builtin")``); usable by a
    client too, as a pre-check that needs no OPA (decisions cached by their ``cache_ttl``)."""

    def __init__(self, *, cache: bool | DecisionCache = True) -> None:
        super().__init__(_decide, cache=cache)

    def __repr__(self) -> str:
        return "BuiltinPolicy()"


def _decide(request: AuthorizationInput) -> dict[str, Any]:
    return evaluate(request.to_dict())


class _Evaluation:
    """The rules of gateway.rego over one input; a value is ``_Undefined`` where OPA's is."""

    def __init__(self, document: object) -> None:
        self.doc = document
        self.principal = _get(document, "principal")
        self.server = _get(document, "server")
        self.tool = _get(document, "tool")
        pid = _get(self.principal, "id")
        self.principal_id = pid if isinstance(pid, str) and pid != "" else _Undefined
        self.roles = _strings_or_empty(self.principal, "roles")
        self.teams = _strings_or_empty(self.principal, "teams")
        self.authorized_teams = _strings_or_empty(self.server, "authorized_teams")
        self.sensitive_params = _strings_or_empty(self.tool, "sensitive_params")
        params = document.get("parameters", {}) if isinstance(document, dict) else _Undefined
        self.parameters = params if isinstance(params, dict) else _Undefined
        self.server_level = _level(_get(self.server, "sensitivity_level"))
        self.tool_level = _level(_get(self.tool, "sensitivity_level"))
        roles = self.roles if isinstance(self.roles, list) else []
        self.clearance_rank = max([ROLE_CLEARANCE[r] for r in roles if r in ROLE_CLEARANCE],
                                  default=1)
        self.clearing_roles = sorted(
            r for r in roles if ROLE_CLEARANCE.get(r) == self.clearance_rank)
        self.team_exempt = any(role in TEAM_EXEMPT_ROLES for role in roles)
        teams = self.teams if isinstance(self.teams, list) else []
        authorized = self.authorized_teams if isinstance(self.authorized_teams, list) else []
        self.shared_teams = sorted(team for team in teams if team in authorized)

    # -- deny ----------------------------------------------------------------------------

    def deny(self) -> set[str]:
        doc = self.doc
        if not isinstance(doc, dict):
            return {"no input document (an object)"}
        reasons: set[str] = set()
        if doc.get("action", _Undefined) != ACTION:
            reasons.add(f"unsupported action {_v(doc.get('action'))} (only {ACTION})")
        if self.principal_id is _Undefined:
            reasons.add("no authenticated principal: principal.id must be a non-empty string")
        if isinstance(self.principal, dict):
            for name in ("roles", "teams"):
                if getattr(self, name) is _Undefined:
                    reasons.add(f"principal.{name} must be an array of strings")
        for part in ("server", "tool"):
            reasons |= self._part_shape(part)
        if self.parameters is _Undefined:
            reasons.add("parameters must be an object")
        reasons |= self._clearance() | self._team() | self._destructive_sql()
        return reasons

    def _part_shape(self, part: str) -> set[str]:
        value = getattr(self, part)
        if not isinstance(value, dict):
            return {f"{part} must be an object"}
        reasons = set()
        name = value.get("name")
        if not isinstance(name, str) or name == "":
            reasons.add(f"{part}.name must be a non-empty string")
        if getattr(self, f"{part}_level") is _Undefined:
            level = _v(value.get("sensitivity_level"))
            reasons.add(f"unknown {part} sensitivity_level {level} (low, medium, high, critical)")
        listed = "authorized_teams" if part == "server" else "sensitive_params"
        if getattr(self, listed) is _Undefined:
            reasons.add(f"{part}.{listed} must be an array of strings")
        return reasons

    def _effective_rank(self) -> Any:
        if self.server_level is _Undefined or self.tool_level is _Undefined:
            return _Undefined
        return max(LEVELS[self.server_level], LEVELS[self.tool_level])

    def _clearance(self) -> set[str]:
        rank = self._effective_rank()
        server_name, tool_name = _get(self.server, "name"), _get(self.tool, "name")
        if rank is _Undefined or self.clearance_rank >= rank or _Undefined in (
                server_name, tool_name, self.principal_id):
            return set()
        return {
            f"insufficient clearance: {_level_name(rank)} sensitivity (server "
            f"{_v(server_name)} {self.server_level}, tool {_v(tool_name)} {self.tool_level}) "
            f"needs a role clearing it; principal {self.principal_id} clears "
            f"{_level_name(self.clearance_rank)}"
        }

    def _team(self) -> set[str]:
        authorized, teams = self.authorized_teams, self.teams
        server_name = _get(self.server, "name")
        if (not isinstance(authorized, list) or not authorized or self.shared_teams
                or self.team_exempt or not isinstance(teams, list)
                or _Undefined in (server_name, self.principal_id)):
            return set()
        return {
            f"team restriction: server {_v(server_name)} is limited to teams "
            f"{_v(sorted(authorized))}; principal {self.principal_id} is in {_v(sorted(teams))}"
        }

    def _destructive_sql(self) -> set[str]:
        if self.parameters is _Undefined:
            return set()
        reasons = set()
        for path, value in _walk(self.parameters, ()):
            if isinstance(value, str):
                for statement in _sql_statements(value):
                    for kind in _statement_kinds(statement):
                        where = ".".join(_v(segment) for segment in path)
                        reasons.add(f"destructive SQL ({kind}) in parameter {where}")
        return reasons

    # -- allow ---------------------------------------------------------------------------

    def allow(self) -> dict[str, Any]:
        level = _level_name(self._effective_rank())
        source = (f"role {self.clearing_roles[0]}" if self.clearing_roles
                  else "authentication (low)")
        if not self.authorized_teams:
            team_text = "no team restriction"
        elif self.shared_teams:
            team_text = f"team {self.shared_teams[0]} authorized"
        else:
            team_text = "team restriction waived for admin"
        extra = {_normalize_key(name) for name in self.sensitive_params}
        filtered, found, removed = _filter(self.parameters, extra)
        filtering = f"; {removed} sensitive parameter(s) removed" if found else ""
        reason = (f"allowed: {level} sensitivity (server {self.server['name']} "
                  f"{self.server_level}, tool {self.tool['name']} {self.tool_level}) cleared "
                  f"by {source}; {team_text}{filtering}")
        return {"allow": True, "reason": reason, "filtered_parameters": filtered,
                "cache_ttl": ALLOW_CACHE_TTL[level]}


def _get(value: object, key: str) -> Any:
    """``value.key`` in Rego: undefined unless ``value`` is an object holding ``key``."""
    if isinstance(value, dict) and key in value:
        return value[key]
    return _Undefined


def _strings_or_empty(obj: object, key: str) -> Any:
    if not isinstance(obj, dict):
        return _Undefined
    value = obj.get(key, [])
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return value
    return _Undefined


def _level(value: object) -> Any:
    return value if isinstance(value, str) and value in LEVELS else _Undefined


def _level_name(rank: int) -> str:
    return next(name for name, value in LEVELS.items() if value == rank)


def _walk(value: Any, path: tuple[Any, ...]) -> Any:
    """Every (path, value) under ``value``, itself included, as Rego's ``walk``."""
    yield path, value
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _walk(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _walk(item, (*path, index))


def _sql_statements(text: str) -> list[str]:
    stripped = _LINE_COMMENT.sub(" ", _BLOCK_COMMENT.sub(" ", text))
    return [statement.strip(_GO_SPACE) for statement in _lower(stripped).split(";")]


def _statement_kinds(statement: str) -> set[str]:
    kinds = {kind for kind, pattern in DESTRUCTIVE_STATEMENTS.items() if pattern.match(statement)}
    if not _WHERE.search(statement):
        kinds |= {kind for kind, pattern in UNBOUNDED_STATEMENTS.items()
                  if pattern.match(statement)}
    return kinds


def _normalize_key(key: str) -> str:
    return _KEY_SEPARATORS.sub("", _lower(key))


def _sensitive(key: str, extra: set[str]) -> bool:
    normalized = _normalize_key(key)
    return normalized.endswith(SENSITIVE_KEY_SUFFIXES) or normalized in extra


def _filter(value: Any, extra: set[str]) -> tuple[Any, bool, int]:
    """``value`` without sensitive keys at any depth; whether any sensitive key exists (under
    a removed one included); how many outermost ones were removed."""
    if isinstance(value, dict):
        kept, found, removed = {}, False, 0
        for key, item in value.items():
            if _sensitive(key, extra):
                found, removed = True, removed + 1
                continue
            kept[key], inner_found, inner_removed = _filter(item, extra)
            found, removed = found or inner_found, removed + inner_removed
        return kept, found, removed
    if isinstance(value, list):
        results = [_filter(item, extra) for item in value]
        return ([r[0] for r in results], any(r[1] for r in results),
                sum(r[2] for r in results))
    return value, False, 0


def _lower(text: str) -> str:
    """Go's strings.ToLower: one character for one (Python's ``"İ".lower()`` is two)."""
    if text.isascii():
        return text.lower()
    return "".join(_lower_char(char) for char in text)


def _lower_char(char: str) -> str:
    lowered = char.lower()
    return lowered if len(lowered) == 1 else _SIMPLE_LOWER.get(char, char)


_SIMPLE_LOWER = {"\u0130": "i"}


def _v(value: Any) -> str:
    """``sprintf("%v", [value])`` as OPA prints it."""
    if isinstance(value, str):
        return value
    return _term(value)


def _term(value: Any) -> str:
    if value is None or value is _Undefined:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 1e21 and "e" not in repr(value):
            return str(int(value))
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ", ".join(_term(item) for item in value) + "]"
    if isinstance(value, Mapping):
        items = sorted(value.items())
        return "{" + ", ".join(f"{_term(k)}: {_term(v)}" for k, v in items) + "}"
    return str(value)


#: For tests: the tables that must equal the Rego file's.
TABLES: dict[str, object] = {
    "levels": LEVELS,
    "role_clearance": ROLE_CLEARANCE,
    "allow_cache_ttl": ALLOW_CACHE_TTL,
    "sensitive_key_suffixes": list(SENSITIVE_KEY_SUFFIXES),
    "team_exempt_roles": sorted(TEAM_EXEMPT_ROLES),
}
