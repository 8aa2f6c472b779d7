"""``sark-sync invoke --idempotency-key``: a re-run command (a cron job run again) with the
same key runs the tool once, on a built-in server and on a hosted stdio server, whose side
effect (a line in a file per ticket) is counted; the gateway answers the re-run with the
first result. Every command is a child process against a real LocalGateway. ``local`` and
``remote`` refuse the option: no server but the gateway deduplicates."""

from __future__ import annotations

import json
import sys

from cli_kinds import TICKET_SERVER, KindsGateway, json_error, run_cli

#: A cron job's command: open a ticket on the hosted stdio server.
CRON = ("invoke", "ticket_stdio", "open_ticket", "title=disk full on db-1")


def test_the_same_key_twice_runs_a_hosted_stdio_tool_once(kinds_gateway: KindsGateway
                                                           ) -> None:
    before = len(kinds_gateway.tickets_opened())
    first = run_cli(*CRON, "--idempotency-key", "cron-2026-12-07", env=kinds_gateway.env())
    again = run_cli(*CRON, "--idempotency-key", "cron-2026-12-07", env=kinds_gateway.env())
    assert (first.returncode, first.stderr) == (0, "")
    assert (again.returncode, again.stdout, again.stderr) == (0, first.stdout, "")
    assert kinds_gateway.tickets_opened()[before:] == ["disk full on db-1"]
    # Without a key (or with another one) each command opens its own ticket: the count above
    # is one because of the key, not because a second call never happened.
    run_cli(*CRON, env=kinds_gateway.env())
    run_cli(*CRON, "--idempotency-key", "cron-2026-12-08", env=kinds_gateway.env())
    assert len(kinds_gateway.tickets_opened()) == before + 3


def test_the_same_key_twice_runs_a_builtin_tool_once_and_replays_its_result(
    kinds_gateway: KindsGateway,
) -> None:
    gateway = kinds_gateway.gateway
    runs = gateway.tool_runs("tools", "create_ticket")
    argv = ("--json", "invoke", "tools", "create_ticket", "title=x", "--idempotency-key",
            "nightly-42")
    first, again = (run_cli(*argv, env=kinds_gateway.env()) for _ in range(2))
    assert (first.returncode, first.stderr, again.returncode, again.stderr) == (0, "", 0, "")
    assert json.loads(first.stdout)["structured"] == json.loads(again.stdout)["structured"]
    assert gateway.tool_runs("tools", "create_ticket") == runs + 1
    sent = [r.headers.get("Idempotency-Key") for r in gateway.requests
            if r.path == "/api/v1/invoke" and r.body and b"create_ticket" in r.body]
    assert sent[-2:] == ["nightly-42", "nightly-42"]


def test_the_same_key_with_other_parameters_exits_2_and_runs_nothing(
    kinds_gateway: KindsGateway,
) -> None:
    before = len(kinds_gateway.tickets_opened())
    assert run_cli(*CRON, "--idempotency-key", "k-conflict", env=kinds_gateway.env()
                   ).returncode == 0
    done = run_cli("--json", "invoke", "ticket_stdio", "open_ticket", "title=other",
                   "--idempotency-key", "k-conflict", env=kinds_gateway.env())
    error = json_error(done)
    assert (done.returncode, done.stdout) == (2, "")
    assert (error["type"], error["status_code"], error["code"]) == \
        ("IdempotencyConflictError", 409, "idempotency_conflict")
    assert len(kinds_gateway.tickets_opened()) == before + 1


def test_a_key_that_is_not_a_header_value_exits_2_before_any_request(
    kinds_gateway: KindsGateway,
) -> None:
    requests_before = len(kinds_gateway.gateway.requests)
    done = run_cli("--json", *CRON, "--idempotency-key", "two words\tand a tab",
                   env=kinds_gateway.env())
    error = json_error(done)
    assert (done.returncode, error["type"]) == (2, "ValidationError")
    assert "idempotency_key" in error["message"] and "tab" not in error["message"]
    assert len(kinds_gateway.gateway.requests) == requests_before


def test_local_and_remote_refuse_the_key_and_call_nothing(kinds_gateway: KindsGateway
                                                          ) -> None:
    before = len(kinds_gateway.tickets_opened())
    local = run_cli("local", "--call", "open_ticket", "title=x", "--idempotency-key", "k",
                    f"--env=TICKETS_FILE={kinds_gateway.tickets}", "--",
                    sys.executable, str(TICKET_SERVER), env=kinds_gateway.env())
    remote = run_cli("remote", "http://127.0.0.1:9/mcp", "--call", "echo", "text=x",
                     "--idempotency-key", "k", env=kinds_gateway.env())
    for done, command in ((local, "local"), (remote, "remote")):
        assert (done.returncode, done.stdout) == (2, "")
        assert done.stderr == (f"sark-sync: error: --idempotency-key needs a gateway: {command} "
                               "reaches the server directly, and an MCP server runs every call "
                               "it gets; call the tool through the gateway with sark-sync "
                               "invoke\n")
    assert len(kinds_gateway.tickets_opened()) == before
