"""The LocalGateway's built-in rules decide exactly as gateway.rego on the real OPA engine.

The built-in rules (``sark_sync/testing/policy/_builtin_policy.py``)
are a Python port of the shipped
policy, for gateways without OPA. Equivalence is checked three ways, each decision object
compared whole (allow, reason, filtered_parameters, cache_ttl):

1. the inputs of the Rego tests themselves: every ``decide(...)``, ``denied_for(...)``,
   ``allowed(...)``, ``params(...)`` and ``filtered(...)`` literal of gateway_test.rego is
   turned into its input document by the engine (``with_values`` of the test package) and
   decided by both;
2. thousands of generated inputs, valid and malformed (seeded, so a failure reproduces);
3. the tables (levels, role clearances, cache TTLs, key suffixes, exempt roles) read from the
   engine equal the port's.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Iterator
from typing import Any, Callable

import pytest
from realcomp.fixtures import OpaServer, shipped_policy

from sark_sync.testing.policy import _builtin_policy
from sark_sync.testing.policy._builtin_policy import evaluate

pytestmark = pytest.mark.realcomp

#: Decides a list of inputs in one request (the engine is in-process: 3,000 take ~1 s).
BATCH_MODULE = """package corpus
import rego.v1
import data.sark.gateway
decisions := [d | some x in input.cases; d := gateway.decision with input as x]
"""
CALLS = ("decide", "denied_for", "allowed", "params", "filtered")
GENERATED = 3000


@pytest.fixture(scope="module")
def engine(tools_python: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[OpaServer]:
    log_path = tmp_path_factory.mktemp("builtin_policy") / "opa_server.log"
    with OpaServer([shipped_policy("gateway.rego"), shipped_policy("gateway_test.rego")],
                   tools_python, log_path) as server:
        assert server.put_policy("corpus", BATCH_MODULE)[0] == 200
        yield server


def engine_decisions(engine: OpaServer, cases: list[Any]) -> list[Any]:
    status, answer = engine.data("corpus/decisions", {"cases": cases})
    assert status == 200, answer
    return answer["result"]


def assert_equivalent(engine: OpaServer, cases: list[Any]) -> None:
    expected = engine_decisions(engine, cases)
    assert len(expected) == len(cases)
    for case, want in zip(cases, expected):
        got = evaluate(case)
        assert got == want, f"input {json.dumps(case)}:\n  rego:    {want}\n  builtin: {got}"


# --- 1. The Rego tests' own inputs ---------------------------------------------------------


def _call_arguments(source: str) -> list[tuple[str, str]]:
    """``(function, argument text)`` of every call of CALLS whose argument is one balanced
    ``{...}`` or ``[...]`` literal (the first argument of denied_for)."""
    found = []
    for match in re.finditer(r"\b(" + "|".join(CALLS) + r")\(", source):
        start = match.end()
        if start >= len(source) or source[start] not in "{[":
            continue
        depth, index, in_string = 0, start, False
        while index < len(source):
            char = source[index]
            if in_string:
                if char == "\\":
                    index += 1
                elif char == '"':
                    in_string = False
            elif char == '"':
                in_string = True
            elif char in "{[":
                depth += 1
            elif char in "}]":
                depth -= 1
                if depth == 0:
                    break
            index += 1
        found.append((match.group(1), source[start:index + 1]))
    return found


def rego_test_inputs(engine: OpaServer) -> list[Any]:
    """The input documents the Rego tests decide on, built by the test package itself."""
    source = shipped_policy("gateway_test.rego").read_text(encoding="utf-8")
    inputs = []
    for number, (function, literal) in enumerate(_call_arguments(source)):
        changes = f"t.params({literal})" if function in ("params", "filtered") else literal
        module = (f"package case{number}\nimport rego.v1\nimport data.sark.gateway_test as t\n"
                  f"doc := t.with_values({changes})\n")
        status, _ = engine.put_policy(f"case{number}", module)
        if status != 200:  # the literal uses a variable of its test (a loop): not standalone
            continue
        status, answer = engine.data(f"case{number}/doc")
        engine.request("DELETE", f"/v1/policies/case{number}")
        assert status == 200 and "result" in answer, answer
        inputs.append(answer["result"])
    return inputs


def test_builtin_rules_decide_every_input_of_the_rego_tests_as_the_engine(
        engine: OpaServer) -> None:
    """Steps: extract each decide/denied_for/allowed/params/filtered literal of
    gateway_test.rego; let the engine build its input document; compare both decisions."""
    inputs = rego_test_inputs(engine)
    assert len(inputs) >= 60, f"only {len(inputs)} inputs extracted from gateway_test.rego"
    assert_equivalent(engine, inputs)
    decisions = [evaluate(doc) for doc in inputs]
    assert any(d["allow"] for d in decisions) and not all(d["allow"] for d in decisions)


# --- 2. Generated inputs -------------------------------------------------------------------

ROLES = ["viewer", "developer", "analyst", "operator", "senior_developer", "lead",
         "security", "admin", "intern", "Admin"]
TEAMS = ["data", "ml", "ops", "Data", "é-team"]
LEVEL_VALUES = ["low", "medium", "high", "critical"]
ODD = [None, 3, 1.5, True, "", "LOW", "secret", [], {}, ["low"], {"a": 1}]
SQL = [
    "SELECT 1", "SELECT 1; DROP TABLE users", "drop table x", "DROP  VIEW v",
    "DELETE FROM users", "DELETE FROM users WHERE id = 1", "UPDATE t SET a = 1",
    "update t set a = 1 where b", "TRUNCATE users", "truncate table only a.b, c",
    "truncate users cascade", "ALTER TABLE t ADD c int", "/* x */ DROP TABLE t",
    "-- c\nDROP TABLE t", "SELECT '--'; DELETE FROM t", "drop\ttable t", "drop\x0btable t",
    "  \u00a0DROP TABLE t", "\x1cDROP TABLE t", "DELETE FROM t\n", "TRUNCATE t\n",
    "alter system set x", "dropped table", "select * from drop_table", "UPDATE t  SET x=1",
]
KEYS = ["password", "db_password", "clientSecret", "X-API-Key", "aws_secret_access_key",
        "refresh_token", "max_tokens", "token_count", "dsn", "DSN", "Api Key", "name",
        "PRIVATE.KEY", "cookie", "auth", "İD_TOKEN", "Credentials", "note"]


def _value(rng: random.Random, depth: int) -> Any:
    roll = rng.random()
    if depth < 3 and roll < 0.25:
        return {rng.choice(KEYS): _value(rng, depth + 1) for _ in range(rng.randint(0, 3))}
    if depth < 3 and roll < 0.35:
        return [_value(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    if roll < 0.55:
        return rng.choice(SQL)
    return rng.choice([1, 2.5, None, True, "plain", "ünï"])


def _valid(rng: random.Random) -> dict[str, Any]:
    return {
        "action": "gateway:tool:invoke",
        "principal": {"id": rng.choice(["alice", "bob"]),
                      "roles": rng.sample(ROLES, rng.randint(0, 3)),
                      "teams": rng.sample(TEAMS, rng.randint(0, 2))},
        "server": {"name": rng.choice(["warehouse", "crm"]),
                   "sensitivity_level": rng.choice(LEVEL_VALUES),
                   "authorized_teams": rng.sample(TEAMS, rng.choice([0, 0, 1, 2]))},
        "tool": {"name": rng.choice(["query", "export"]),
                 "sensitivity_level": rng.choice(LEVEL_VALUES),
                 "sensitive_params": rng.sample(["dsn", "Api-Key", "note"], rng.randint(0, 2)),
                 "annotations": {"readOnlyHint": rng.random() < 0.5}},
        "parameters": {rng.choice(KEYS): _value(rng, 1) for _ in range(rng.randint(0, 4))},
        "context": {"request_id": "r", "timestamp": "2026-01-01T00:00:00Z"},
    }


_BREAKERS: list[Callable[[random.Random, dict[str, Any]], object]] = [
    lambda rng, doc: doc.pop(rng.choice(list(doc))),
    lambda rng, doc: doc.__setitem__(rng.choice(list(doc)), rng.choice(ODD)),
    lambda rng, doc: doc["principal"].__setitem__(
        rng.choice(["id", "roles", "teams"]), rng.choice([*ODD, ["a", 1]])),
    lambda rng, doc: doc["server"].__setitem__(
        rng.choice(["name", "sensitivity_level", "authorized_teams"]), rng.choice(ODD)),
    lambda rng, doc: doc["tool"].__setitem__(
        rng.choice(["name", "sensitivity_level", "sensitive_params"]), rng.choice(ODD)),
    lambda rng, doc: doc[rng.choice(["principal", "server", "tool"])].clear(),
]


def generated_inputs(seed: int, count: int) -> list[Any]:
    rng = random.Random(seed)
    cases: list[Any] = [None, 7, "input", [], {}]
    while len(cases) < count:
        doc = _valid(rng)
        for _ in range(rng.choice([0, 0, 0, 1, 2])):
            try:
                rng.choice(_BREAKERS)(rng, doc)
            except (KeyError, IndexError, AttributeError, TypeError):
                pass  # the part was already broken
        cases.append(doc)
    return cases


@pytest.mark.parametrize("seed", [1, 2])
def test_builtin_rules_decide_generated_inputs_as_the_engine(engine: OpaServer,
                                                             seed: int) -> None:
    """Steps: generate valid and malformed inputs (roles, teams, levels, SQL, sensitive keys
    at any depth, odd types); decide each on the engine and with the built-in rules; equal."""
    cases = generated_inputs(seed, GENERATED)
    assert_equivalent(engine, cases)
    decisions = [evaluate(case) for case in cases]
    allowed = sum(d["allow"] for d in decisions)
    assert GENERATED // 20 < allowed < GENERATED * 19 // 20  # both outcomes well represented
    assert any(d["allow"] and d["filtered_parameters"] != cases[i]["parameters"]
               for i, d in enumerate(decisions))
    assert any("destructive SQL" in d["reason"] for d in decisions)


# --- 3. The tables --------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(_builtin_policy.TABLES))
def test_builtin_tables_are_the_rego_files(engine: OpaServer, name: str) -> None:
    status, answer = engine.data(f"sark/gateway/{name}")
    assert status == 200
    want = answer["result"]
    got = _builtin_policy.TABLES[name]
    assert (sorted(got) if isinstance(got, list) else got) == \
        (sorted(want) if isinstance(want, list) else want)
