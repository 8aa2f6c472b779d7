"""The shipped policy, ``sark_sync/policies/gateway.rego``, on the real OPA engine.

Both Rego files are taken from the *installed* sark_sync (the wheel's copy under tox) and
loaded into ``opa_server.py`` (OPA v1.20.2 in the tools venv). The bindings have no ``opa
test`` runner, so each ``test_`` rule of ``gateway_test.rego`` is evaluated on its own
(``POST /v1/data/sark/gateway_test/<rule>``) as one pytest case, named after it: it passes
when the rule is ``true``, as under ``opa test``. A coverage run (the bindings' ``cover``
tracer) checks that those tests reach every rule of the policy.

Then the decisions as sark_sync's ``OPAAuthorizer`` gets them: the policy input document
posted over HTTP to ``/v1/data/sark/gateway/decision``, checked against a Python table of
the roles and levels, and for the deny rules, the filtering and the fail-closed cases.
"""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from realcomp.fixtures import SCRUBBED_ENV, OpaServer, shipped_policy

pytestmark = pytest.mark.realcomp

DECISION = "sark/gateway/decision"
DECISION_KEYS = {"allow", "reason", "filtered_parameters", "cache_ttl"}

#: The roles of gateway.rego and the highest level each clears (an independent copy: the
#: matrix test below checks the policy against it).
CLEARANCE = {"viewer": 1, "developer": 2, "analyst": 2, "operator": 2, "senior_developer": 3,
             "lead": 3, "security": 3, "admin": 4, "intern": 1}
LEVELS = {"low": 1, "medium": 2, "high": 3, "critical": 4}
ALLOW_TTL = {"low": 300, "medium": 60, "high": 30, "critical": 0}

# The coverage run: loads the policies given as arguments, evaluates the whole test package
# once with OPA's cover tracer, prints the report of the first file.
_COVERAGE_SCRIPT = """
import json, sys
from opa_bindings import OpaEngine
engine = OpaEngine()
for path in sys.argv[1:]:
    engine.add_policy(path.rsplit("/", 1)[-1], open(path, encoding="utf-8").read())
engine.eval_query("tests := data.sark.gateway_test", coverage=True)
print(json.dumps(engine.last_coverage["files"][sys.argv[1].rsplit("/", 1)[-1]]))
"""


def _rego_test_names() -> list[str]:
    """The ``test_`` rules of the installed gateway_test.rego, in file order (read at
    collection; none if the file is missing, which test_the_rego_tests_are_found reports)."""
    try:
        source = shipped_policy("gateway_test.rego").read_text(encoding="utf-8")
    except AssertionError:
        return []
    return re.findall(r"^(test_\w+)\b", source, flags=re.MULTILINE)


REGO_TESTS = _rego_test_names()


@pytest.fixture(scope="module")
def rego_server(tools_python: Path, tmp_path_factory: pytest.TempPathFactory
                ) -> Iterator[OpaServer]:
    """An OPA server with gateway.rego and its tests, for this module."""
    log_path = tmp_path_factory.mktemp("rego_tests") / "opa_server.log"
    policies = [shipped_policy("gateway.rego"), shipped_policy("gateway_test.rego")]
    with OpaServer(policies, tools_python, log_path) as server:
        yield server


def decide(server: OpaServer, document: Any) -> dict[str, Any]:
    """The decision for ``document``; fails unless it is one object of the four fields."""
    status, answer = server.data(DECISION, document)
    assert status == 200, answer
    decision = answer["result"]
    assert set(decision) == DECISION_KEYS, decision
    assert isinstance(decision["allow"], bool) and isinstance(decision["reason"], str)
    assert isinstance(decision["cache_ttl"], int)
    return decision


def request(**changes: Any) -> dict[str, Any]:
    """The policy input document of an allowed call, with top-level parts replaced:
    ``request(principal={...})``; ``principal_roles=[...]`` etc. replace one field."""
    document: dict[str, Any] = {
        "action": "gateway:tool:invoke",
        "principal": {"id": "alice", "roles": ["developer"], "teams": ["data"]},
        "server": {"name": "warehouse", "sensitivity_level": "medium",
                   "authorized_teams": ["data"]},
        "tool": {"name": "query", "sensitivity_level": "low", "sensitive_params": ["dsn"],
                 "annotations": {"readOnlyHint": True}},
        "parameters": {"sql": "SELECT id FROM users WHERE id = 1", "limit": 10},
        "context": {"request_id": "req-1", "timestamp": "2025-01-01T00:00:00Z"},
    }
    for key, value in changes.items():
        part, _, field = key.partition("_")
        if field and part in ("principal", "server", "tool"):
            document[part][field] = copy.deepcopy(value)
        else:
            document[key] = copy.deepcopy(value)
    return document


# --- The Rego tests, on the real engine --------------------------------------------------


def test_the_rego_tests_are_found() -> None:
    assert REGO_TESTS, "no test_ rules found in the installed policies/gateway_test.rego"
    assert len(REGO_TESTS) == len(set(REGO_TESTS)), "two test_ rules share a name"


@pytest.mark.parametrize("rule", REGO_TESTS)
def test_rego(rego_server: OpaServer, rule: str) -> None:
    status, answer = rego_server.data(f"sark/gateway_test/{rule}")
    assert status == 200, answer
    if answer == {}:
        pytest.fail(f"{rule} failed: undefined (an expression in it is false or undefined)",
                    pytrace=False)
    assert answer == {"result": True}


def test_every_rego_test_rule_was_collected(rego_server: OpaServer) -> None:
    """The package, evaluated whole, has no test_ rule that the collection missed."""
    status, answer = rego_server.data("sark/gateway_test")
    assert status == 200, answer
    defined = {name for name in answer["result"] if name.startswith("test_")}
    assert defined <= set(REGO_TESTS), f"not collected: {sorted(defined - set(REGO_TESTS))}"


def test_the_rego_tests_reach_every_rule_of_the_policy(tools_python: Path) -> None:
    """Coverage of gateway.rego by its tests: only the default decision, the safety net
    that no valid or invalid input reaches, is never evaluated."""
    policy = shipped_policy("gateway.rego")
    env = {k: v for k, v in os.environ.items() if k not in SCRUBBED_ENV}
    done = subprocess.run(
        [str(tools_python), "-c", _COVERAGE_SCRIPT, str(policy),
         str(shipped_policy("gateway_test.rego"))],
        env=env, capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    lines = policy.read_text(encoding="utf-8").splitlines()
    default_start = lines.index("default decision := {") + 1
    default_end = default_start + lines[default_start - 1:].index("}")
    uncovered = sorted({
        row
        for block in report.get("not_covered") or []
        for row in range(block["start"]["row"], block["end"]["row"] + 1)
    })
    outside = [f"{row}: {lines[row - 1]}" for row in uncovered
               if not default_start <= row <= default_end]
    assert not outside, "lines of gateway.rego no Rego test reaches:\n" + "\n".join(outside)


# --- Decisions over HTTP, as OPAAuthorizer gets them -------------------------------------


def test_an_allowed_call_gets_the_whole_decision(gateway_opa_server: OpaServer) -> None:
    assert decide(gateway_opa_server, request()) == {
        "allow": True,
        "reason": "allowed: medium sensitivity (server warehouse medium, tool query low) "
                  "cleared by role developer; team data authorized",
        "filtered_parameters": {"sql": "SELECT id FROM users WHERE id = 1", "limit": 10},
        "cache_ttl": 60,
    }


@pytest.mark.parametrize("level", list(LEVELS))
@pytest.mark.parametrize("role", list(CLEARANCE))
def test_roles_against_levels(gateway_opa_server: OpaServer, role: str, level: str) -> None:
    decision = decide(gateway_opa_server, request(principal_roles=[role],
                                                  server_sensitivity_level=level))
    assert decision["allow"] is (CLEARANCE[role] >= LEVELS[level]), decision
    if decision["allow"]:
        assert decision["cache_ttl"] == ALLOW_TTL[level]
    else:
        assert decision["reason"].startswith(f"denied: insufficient clearance: {level}")
        assert (decision["cache_ttl"], decision["filtered_parameters"]) == (0, None)


@pytest.mark.parametrize(("server", "tool"), [("low", "high"), ("high", "low"),
                                              ("medium", "critical")])
def test_the_higher_of_server_and_tool_levels_counts(
    gateway_opa_server: OpaServer, server: str, tool: str
) -> None:
    decision = decide(gateway_opa_server, request(server_sensitivity_level=server,
                                                  tool_sensitivity_level=tool))
    assert decision["allow"] is False
    assert "insufficient clearance" in decision["reason"]


def test_a_principal_with_a_low_and_a_high_role_gets_one_decision(
    gateway_opa_server: OpaServer
) -> None:
    decision = decide(gateway_opa_server, request(principal_roles=["viewer", "admin"],
                                                  server_sensitivity_level="critical"))
    assert decision["allow"] is True
    assert "cleared by role admin" in decision["reason"]


def test_a_drop_after_a_harmless_statement_is_denied(gateway_opa_server: OpaServer) -> None:
    decision = decide(gateway_opa_server,
                      request(parameters={"sql": "SELECT 1; DROP TABLE users"}))
    assert decision == {
        "allow": False,
        "reason": "denied: destructive SQL (DROP) in parameter sql",
        "filtered_parameters": None,
        "cache_ttl": 0,
    }


@pytest.mark.parametrize("sql", [
    "drop table users",
    "SELECT 1;\n-- cleanup\nDrop Table users",
    "select 1; /* x */ TRUNCATE users",
    "DELETE FROM users",
    "UPDATE users SET role = 'admin'",
    "ALTER TABLE users DROP COLUMN email",
])
def test_destructive_sql_is_denied_even_for_admin(gateway_opa_server: OpaServer,
                                                  sql: str) -> None:
    decision = decide(gateway_opa_server, request(principal_roles=["admin"],
                                                  parameters={"job": [{"sql": sql}]}))
    assert decision["allow"] is False
    assert "destructive SQL" in decision["reason"] and "parameter job.0.sql" in decision["reason"]


def test_team_restrictions(gateway_opa_server: OpaServer) -> None:
    outsider = decide(gateway_opa_server, request(principal_teams=["web"]))
    assert outsider["allow"] is False
    assert "team restriction: server warehouse is limited to teams" in outsider["reason"]
    admin = decide(gateway_opa_server, request(principal_roles=["admin"], principal_teams=[]))
    assert admin["allow"] is True
    open_server = decide(gateway_opa_server, request(principal_teams=[],
                                                     server_authorized_teams=[]))
    assert open_server["allow"] is True


def test_sensitive_keys_are_filtered_at_any_depth(gateway_opa_server: OpaServer) -> None:
    parameters = {
        "sql": "SELECT 1",
        "password": "p",
        "connection": {"host": "db", "API-Key": "k", "options": {"clientSecret": "s", "ssl": True}},
        "batches": [{"token": "t", "rows": [1, 2]}, [{"private_key": "k", "n": 1}], "plain"],
        "dsn": "postgres://u:p@db/x",
        "max_tokens": 100,
    }
    decision = decide(gateway_opa_server, request(parameters=parameters))
    assert decision["allow"] is True
    assert decision["filtered_parameters"] == {
        "sql": "SELECT 1",
        "connection": {"host": "db", "options": {"ssl": True}},
        "batches": [{"rows": [1, 2]}, [{"n": 1}], "plain"],
        "max_tokens": 100,
    }
    assert decision["reason"].endswith("; 6 sensitive parameter(s) removed")


def test_an_all_filtered_call_gets_an_empty_object(gateway_opa_server: OpaServer) -> None:
    decision = decide(gateway_opa_server,
                      request(parameters={"password": "p", "nested": {"token": "t"},
                                          "api_key": "k"}))
    assert decision["filtered_parameters"] == {"nested": {}}
    decision = decide(gateway_opa_server, request(parameters={"password": "p", "token": "t"}))
    assert (decision["allow"], decision["filtered_parameters"]) == (True, {})


def test_parameters_pass_through_unchanged_when_nothing_is_sensitive(
    gateway_opa_server: OpaServer
) -> None:
    parameters = {"texte": "déjà vu ✓", "n": 1.5, "flags": [True, None, {"k": []}], "": "x"}
    decision = decide(gateway_opa_server, request(parameters=parameters))
    assert decision["filtered_parameters"] == parameters


@pytest.mark.parametrize("document", [
    None,
    {},
    {"action": "gateway:tool:invoke"},
], ids=["no-input", "empty", "action-only"])
def test_missing_input_is_denied(gateway_opa_server: OpaServer, document: Any) -> None:
    decision = decide(gateway_opa_server, document)
    assert decision["allow"] is False
    assert decision["reason"].startswith("denied: no ")


@pytest.mark.parametrize(("changes", "reason"), [
    ({"principal": {"roles": ["admin"], "teams": ["data"]}}, "no authenticated principal"),
    ({"principal_id": ""}, "no authenticated principal"),
    ({"server_sensitivity_level": "top-secret"}, "unknown server sensitivity_level top-secret"),
    ({"tool_sensitivity_level": None}, "unknown tool sensitivity_level null"),
    ({"principal_roles": "admin"}, "principal.roles must be an array of strings"),
    ({"parameters": ["x"]}, "parameters must be an object"),
    ({"action": "gateway:server:delete"}, "unsupported action gateway:server:delete"),
])
def test_odd_input_fails_closed(gateway_opa_server: OpaServer, changes: dict[str, Any],
                                reason: str) -> None:
    decision = decide(gateway_opa_server, request(**changes))
    assert decision["allow"] is False
    assert reason in decision["reason"], decision["reason"]
    assert (decision["filtered_parameters"], decision["cache_ttl"]) == (None, 0)


def test_an_undefined_path_is_an_empty_answer(gateway_opa_server: OpaServer) -> None:
    assert gateway_opa_server.data("sark/gateway/no_such_rule", request()) == (200, {})
    assert gateway_opa_server.data("sark/other/decision", request()) == (200, {})


def test_a_large_parameter_document_is_decided_quickly(gateway_opa_server: OpaServer) -> None:
    rows = [{"id": i, "token": f"t{i}", "tags": ["a", {"secret": i, "ok": i}]} for i in range(500)]
    start = time.monotonic()
    decision = decide(gateway_opa_server, request(parameters={"rows": rows}))
    elapsed = time.monotonic() - start
    assert decision["filtered_parameters"] == {
        "rows": [{"id": i, "tags": ["a", {"ok": i}]} for i in range(500)]}
    assert elapsed < 5.0, elapsed
