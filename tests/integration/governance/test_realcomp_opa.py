"""The OPA Data API server of the tests (tests/realcomp/opa_server.py): the real OPA engine,
v1.20.2 through opa-golib-python-bindings in the tools venv, behind our HTTP framing.

Pinned here: that the engine really is OPA 1.x (its build information, Rego v1 syntax
required), and the Data API answers that sark_sync's ``OPAAuthorizer`` relies on: a value as
``{"result": ...}``, an undefined document as ``{}``, compile errors as 400 with OPA's error
objects (and the policies unchanged), evaluation errors as 500, keep-alive without Nagle
delays, concurrent queries, and a clean exit on SIGTERM.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlsplit

import pytest
from realcomp.fixtures import OPA_SERVER, SCRUBBED_ENV, OpaServer

pytestmark = pytest.mark.realcomp

StartOpa = Callable[..., OpaServer]

#: A small policy in Rego v1: a default, a partial set, an input-driven rule.
AUTHZ = """\
package demo.authz

default allow := false

allow if input.user == "alice"

admins contains name if {
    some name in input.users
    startswith(name, "adm-")
}

greeting := sprintf("hello %s", [input.user]) if input.user
"""

#: Keep-alive requests timed on one connection: 50 of them take ~15 ms; with Nagle's
#: algorithm on (the body held back until the client's delayed ACK) they take ~2.2 s.
KEEPALIVE_REQUESTS = 50
KEEPALIVE_BOUND = 1.0


def _post_json(server: OpaServer, path: str, body: Any) -> tuple[int, Any]:
    return server.request("POST", path, json.dumps(body).encode())


def test_the_engine_is_opa_1_20(tools_python: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in SCRUBBED_ENV}
    out = subprocess.run([str(tools_python), str(OPA_SERVER), "--version"], env=env,
                         capture_output=True, text=True, timeout=30, check=True).stdout
    assert out.strip().startswith("v1.20."), out


def test_health_answers_an_empty_object(opa_server: StartOpa) -> None:
    server = opa_server()
    assert server.request("GET", "/health") == (200, {})


def test_a_loaded_policy_allows_and_denies(opa_server: StartOpa) -> None:
    server = opa_server()
    assert server.put_policy("authz.rego", AUTHZ) == (200, {})
    assert server.data("demo/authz/allow", {"user": "alice"}) == (200, {"result": True})
    assert server.data("demo/authz/allow", {"user": "mallory"}) == (200, {"result": False})
    assert server.data("demo/authz/admins", {"users": ["adm-a", "bob", "adm-b"]}) == (
        200, {"result": ["adm-a", "adm-b"]})


def test_an_undefined_document_is_an_empty_object(opa_server: StartOpa) -> None:
    server = opa_server()
    server.put_policy("authz.rego", AUTHZ)
    assert server.data("demo/authz/greeting", {"other": 1}) == (200, {})
    assert server.data("demo/authz/no_such_rule", {"user": "alice"}) == (200, {})
    assert server.data("no/such/package") == (200, {})
    assert server.data("demo/authz/greeting", {"user": "alice"}) == (
        200, {"result": "hello alice"})


def test_a_preloaded_policy_answers_at_once(opa_server: StartOpa, tmp_path: Path) -> None:
    policy = tmp_path / "authz.rego"
    policy.write_text(AUTHZ, encoding="utf-8")
    server = opa_server(policy)
    assert server.data("demo/authz/allow", {"user": "alice"}) == (200, {"result": True})
    status, listed = server.request("GET", "/v1/policies")
    assert (status, listed) == (200, {"result": [{"id": "authz.rego", "raw": AUTHZ}]})


def test_a_syntax_error_is_a_400_with_opas_error_objects(opa_server: StartOpa) -> None:
    server = opa_server()
    source = "package broken\n\nallow if input.x == == 1\n"
    status, answer = server.put_policy("broken.rego", source)
    assert status == 400
    assert answer["code"] == "invalid_parameter"
    assert answer["message"] == "error(s) occurred while compiling module(s)"
    [error] = answer["errors"]
    assert error["code"] == "rego_parse_error"
    assert error["message"] == "unexpected equal token"
    assert error["location"] == {"file": "broken.rego", "row": 3}
    assert error["details"][0] == "allow if input.x == == 1"


def test_rego_v0_syntax_is_refused(opa_server: StartOpa) -> None:
    """OPA 1.x parses Rego v1 only: a v0 rule body without ``if`` is a parse error."""
    server = opa_server()
    status, answer = server.put_policy("v0.rego", "package v0\n\nallow {\n    true\n}\n")
    assert status == 400
    assert answer["errors"][0]["code"] == "rego_parse_error"
    assert answer["errors"][0]["message"] == "`if` keyword is required before rule body"


def test_a_compile_error_is_a_400_and_keeps_the_policies(opa_server: StartOpa) -> None:
    server = opa_server()
    server.put_policy("authz.rego", AUTHZ)
    status, answer = server.put_policy("authz.rego", "package demo.authz\n\nallow if x\n")
    assert status == 400
    assert answer["errors"] == [{"code": "rego_unsafe_var_error", "message": "var x is unsafe",
                                 "location": {"file": "authz.rego", "row": 3}}]
    status, answer = server.put_policy("typed.rego", "package t\n\nn := count(1)\n")
    assert status == 400
    assert answer["errors"][0]["code"] == "rego_type_error"
    # The good version still answers: a failed upload changes nothing.
    assert server.data("demo/authz/allow", {"user": "alice"}) == (200, {"result": True})
    assert [p["id"] for p in server.request("GET", "/v1/policies")[1]["result"]] == [
        "authz.rego"]


def test_a_policy_is_replaced_and_deleted_by_its_id(opa_server: StartOpa) -> None:
    server = opa_server()
    server.put_policy("authz.rego", AUTHZ)
    server.put_policy("authz.rego", 'package demo.authz\n\nallow if input.user == "bob"\n')
    assert server.data("demo/authz/allow", {"user": "alice"}) == (200, {})
    assert server.data("demo/authz/allow", {"user": "bob"}) == (200, {"result": True})
    assert server.request("DELETE", "/v1/policies/authz.rego") == (200, {})
    assert server.data("demo/authz/allow", {"user": "bob"}) == (200, {})
    status, answer = server.request("DELETE", "/v1/policies/authz.rego")
    assert (status, answer["code"]) == (404, "resource_not_found")


def test_a_conflict_in_evaluation_is_a_500(opa_server: StartOpa) -> None:
    server = opa_server()
    server.put_policy("c.rego", "package c\n\nx := 1 if input.a\n\nx := 2 if input.b\n")
    assert server.data("c/x", {"a": True}) == (200, {"result": 1})
    status, answer = server.data("c/x", {"a": True, "b": True})
    assert status == 500
    assert answer["code"] == "internal_error"
    assert answer["errors"][0]["code"] == "eval_conflict_error"


def test_a_body_that_is_not_a_json_object_is_a_400(opa_server: StartOpa) -> None:
    server = opa_server()
    for body in (b"{not json", b"[1, 2]"):
        status, answer = server.request("POST", "/v1/data/demo", body)
        assert (status, answer["code"]) == (400, "invalid_parameter"), body


def test_keep_alive_requests_are_not_delayed_by_nagle(opa_server: StartOpa) -> None:
    server = opa_server()
    server.put_policy("authz.rego", AUTHZ)
    parts = urlsplit(server.url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    body = json.dumps({"input": {"user": "alice"}})
    try:
        start = time.monotonic()
        for _ in range(KEEPALIVE_REQUESTS):
            connection.request("POST", "/v1/data/demo/authz/allow", body,
                               {"Content-Type": "application/json"})
            answer = connection.getresponse()
            assert (answer.status, json.loads(answer.read())) == (200, {"result": True})
        elapsed = time.monotonic() - start
    finally:
        connection.close()
    assert elapsed < KEEPALIVE_BOUND, f"{KEEPALIVE_REQUESTS} requests took {elapsed:.2f}s"


def test_concurrent_queries_get_their_own_answers(opa_server: StartOpa) -> None:
    server = opa_server()
    server.put_policy("authz.rego", AUTHZ)
    wrong: list[tuple[str, Any]] = []

    def ask(n: int) -> None:
        for i in range(25):
            user = f"user-{n}-{i}" if i % 2 else "alice"
            answer = server.data("demo/authz/greeting", {"user": user})
            if answer != (200, {"result": f"hello {user}"}):
                wrong.append((user, answer))

    threads = [threading.Thread(target=ask, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not wrong


def test_sigterm_stops_it_with_exit_code_0(opa_server: StartOpa) -> None:
    server = opa_server()
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(5) == 0
    assert "Traceback" not in server.log(), server.log()


def test_a_preloaded_policy_that_does_not_compile_exits_2(
    tools_python: Path, tmp_path: Path
) -> None:
    policy = tmp_path / "bad.rego"
    policy.write_text("package bad\n\nallow if x\n", encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k not in SCRUBBED_ENV}
    done = subprocess.run([str(tools_python), str(OPA_SERVER), "--policy", str(policy)],
                          env=env, capture_output=True, text=True, timeout=30)
    assert (done.returncode, done.stdout) == (2, "")
    assert "rego_unsafe_var_error: var x is unsafe" in done.stderr
