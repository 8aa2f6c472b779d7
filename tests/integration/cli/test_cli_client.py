"""The client subcommands of ``sark-sync`` in-process (``cli.main`` with capsys) against the
demo gateway (the shipped policy's rules, the demo MCP server hosted over stdio): their
output, their ``--json`` shapes, every exit code, configuration from flags and ``SARK_*``
variables, and that no secret reaches any output."""

from __future__ import annotations

import io
import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sark_sync.cli import _main as cli
from sark_sync.cli._demo_gateway import API_KEY, DemoUsers
from sark_sync.testing import Fault, LocalGateway

PASSWORD = "hunter2-do-not-print"



@pytest.fixture
def gateway(demo_gateway: LocalGateway, users: DemoUsers, monkeypatch: pytest.MonkeyPatch
       ) -> Iterator[LocalGateway]:
    """The demo gateway, configured through the environment as alice; faults cleared after."""
    for name in ("SARK_TIMEOUT",):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SARK_GATEWAY_URL", demo_gateway.url)
    monkeypatch.setenv("SARK_API_KEY", API_KEY)
    monkeypatch.setenv("SARK_USER_TOKEN", users.alice)
    yield demo_gateway
    demo_gateway.clear_faults()


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = cli.main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


# -- discovery -------------------------------------------------------------------------------


def test_servers_prints_an_aligned_table_of_the_catalogue(
    gateway: LocalGateway, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, err = run(capsys, "servers")
    assert (status, err) == (0, "")
    assert out.splitlines() == [
        "SERVER   TRANSPORT  SENSITIVITY  TEAMS    HEALTH   TOOLS",
        "demo     stdio      low          -        healthy  12",
        "tickets  http       low          -        healthy  1",
        "payroll  http       medium       finance  healthy  2",
    ]


def test_servers_json_is_a_list_of_server_objects_with_the_wire_field_names(
    gateway: LocalGateway, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, _ = run(capsys, "servers", "--json")
    servers = json.loads(out)
    assert status == 0 and [s["server_name"] for s in servers] == ["demo", "tickets", "payroll"]
    assert set(servers[2]) == {"server_name", "server_id", "server_url", "transport",
                               "sensitivity_level", "authorized_teams", "health_status",
                               "tools_count", "created_at", "updated_at"}
    assert servers[2]["authorized_teams"] == ["finance"]
    assert servers[0]["created_at"].endswith("Z")


def test_tools_of_one_server_show_retry_safety_and_parameters(
    gateway: LocalGateway, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, _ = run(capsys, "tools", "--server", "payroll")
    assert status == 0
    assert out.splitlines() == [
        "SERVER   TOOL           SENSITIVITY  RETRY-SAFE  PARAMETERS            DESCRIPTION",
        "payroll  salary_report  low          yes         dept                  Total "
        "salaries of a department.",
        "payroll  connect_db     low          no          host,user,[password]  Open a "
        "database session; reports the parameters it got.",
    ]


def test_tools_json_lists_every_server_s_tools_with_schema_and_annotations(
    gateway: LocalGateway, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, _ = run(capsys, "--json", "tools")
    tools = json.loads(out)
    assert status == 0 and len(tools) == 15
    add = next(t for t in tools if t["tool_name"] == "add")
    assert add["server_name"] == "demo"
    assert add["input_schema"]["required"] == ["a", "b"]
    assert add["annotations"]["readOnlyHint"] is True


def test_tools_of_an_unknown_server_exit_5(
    gateway: LocalGateway, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, err = run(capsys, "tools", "--server", "nope")
    assert (status, out) == (5, "")
    assert err.startswith("sark-sync: error: NotFoundError: ") and err.count("\n") == 1


def test_health_prints_the_status_and_exits_0(
    gateway: LocalGateway, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(capsys, "health") == (0, "healthy (gateway 0.1.0-local, 3 servers)\n", "")
    out = run(capsys, "health", "--json")[1]
    assert json.loads(out) == {"status": "healthy", "version": "0.1.0-local", "servers": 3}


def test_health_of_an_unhealthy_gateway_prints_it_and_exits_6(
    capsys: pytest.CaptureFixture[str]
) -> None:
    with LocalGateway(api_keys=("k",)) as other:
        other.set_health("unhealthy")
        status, out, err = run(capsys, "health", "--url", other.url, "--api-key", "k")
    assert (status, err) == (6, "")
    assert out.startswith("unhealthy (")


# -- invoke ----------------------------------------------------------------------------------


def test_invoke_parses_values_as_json_when_they_parse(
    gateway: LocalGateway, capsys: pytest.CaptureFixture[str]
) -> None:
    # demo/add answers the text "5.5" and the structured content {"sum": 5.5}: text wins
    assert run(capsys, "invoke", "demo", "add", "a=2", "b=3.5") == (0, "5.5\n", "")
    assert run(capsys, "invoke", "demo", "echo", "text=hello world") == (0, "hello world\n", "")
    assert run(capsys, "invoke", "demo", "echo", 'text="2"') == (0, "2\n", "")


def test_invoke_json_output_has_the_result_fields(
    gateway: LocalGateway, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, err = run(capsys, "invoke", "demo", "add", "a=1", "b=1", "--json")
    result = json.loads(out)
    assert (status, err) == (0, "")
    assert set(result) == {"server", "tool", "request_id", "is_error", "content", "structured",
                           "filtered", "latency_ms", "attempts"}
    assert result["structured"] == {"sum": 2} and result["is_error"] is False
    assert (result["server"], result["tool"], result["attempts"]) == ("demo", "add", 1)


def test_invoke_takes_parameters_from_json_a_file_and_stdin_words_winning(
    gateway: LocalGateway, capsys: pytest.CaptureFixture[str], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert run(capsys, "invoke", "demo", "add", "--json-params", '{"a": 1, "b": 2}')[1] == "3\n"
    params = tmp_path / "params.json"
    params.write_text('{"a": 10, "b": 20}')
    assert run(capsys, "invoke", "demo", "add", "--params-file", str(params), "b=1")[1] == \
        "11\n"
    monkeypatch.setattr(sys, "stdin", io.StringIO('{"a": 4, "b": 4}'))
    assert run(capsys, "invoke", "demo", "add", "--params-file", "-")[1] == "8\n"


@pytest.mark.parametrize("argv", [
    ["invoke", "demo", "echo", "no-equals-sign"],
    ["invoke", "demo", "echo", "--json-params", "{not json"],
    ["invoke", "demo", "echo", "--json-params", "[1, 2]"],
    ["invoke", "demo", "echo", "--params-file", "/nonexistent/params.json"],
    ["invoke", "demo", "bad name!"],
    ["--timeout", "0", "servers"],
    ["--timeout", "soon", "servers"],
])
def test_unusable_arguments_exit_2_with_one_line(
    gateway: LocalGateway, capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    status, out, err = run(capsys, *argv)
    assert (status, out) == (2, "")
    assert err.startswith("sark-sync: error: ") and err.count("\n") == 1


def test_a_tool_error_prints_the_tool_s_output_and_exits_1(
    gateway: LocalGateway, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, err = run(capsys, "invoke", "demo", "fail", "message=disk full")
    assert (status, out) == (1, "disk full\n")
    assert err == "sark-sync: error: tool demo/fail reported an error (its output is above)\n"


def test_a_denied_call_exits_4_with_the_policy_s_reason(
    gateway: LocalGateway, users: DemoUsers, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, err = run(capsys, "invoke", "payroll", "salary_report", "dept=sales",
                           "--user-token", users.bob)
    assert (status, out) == (4, "")
    assert err.startswith("sark-sync: error: AuthorizationDenied: policy_denied: denied: "
                          "insufficient clearance: medium sensitivity (server payroll medium")
    assert "principal bob clears low" in err and "status_code=403" in err
    assert err.count("\n") == 1


def test_a_filtered_parameter_never_reaches_the_tool_and_a_note_names_it(
    gateway: LocalGateway, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, err = run(capsys, "invoke", "payroll", "connect_db", "host=db", "user=alice",
                           f"password={PASSWORD}")
    assert status == 0
    assert json.loads(out)["parameters_received"] == ["host", "user"]
    assert err == ("sark-sync: note: the policy removed these parameters before the tool "
                   "ran: password\n")


@pytest.mark.parametrize(("argv", "code"), [
    (["invoke", "tickets", "nosuch"], 5),
    (["invoke", "demo", "nosuch"], 5),  # a hosted stdio server: 404 for a tool not listed
    (["invoke", "nosuch", "echo", "text=x"], 5),
    (["servers", "--api-key", "wrong-key"], 3),
    (["invoke", "demo", "echo", "text=x", "--user-token", "not-a-jwt"], 3),
])
def test_gateway_answers_map_to_exit_codes(
    gateway: LocalGateway, capsys: pytest.CaptureFixture[str], argv: list[str], code: int
) -> None:
    status, out, err = run(capsys, *argv)
    assert (status, out) == (code, "")
    assert err.startswith("sark-sync: error: ") and err.count("\n") == 1


@pytest.fixture
def faulty(monkeypatch: pytest.MonkeyPatch) -> Iterator[LocalGateway]:
    """A gateway of its own (its faults' waits end when it stops) with tickets/create_ticket."""
    with LocalGateway(api_keys=(API_KEY,)) as gateway:
        gateway.add_server("tickets")
        gateway.add_tool("tickets", "create_ticket", lambda p: {"ticket": "T-1"})
        monkeypatch.setenv("SARK_GATEWAY_URL", gateway.url)
        monkeypatch.setenv("SARK_API_KEY", API_KEY)
        monkeypatch.delenv("SARK_TIMEOUT", raising=False)
        yield gateway


@pytest.mark.parametrize(("fault", "code", "error"), [
    (Fault(status=400), 2, "BadRequestError"),
    (Fault(status=409), 2, "IdempotencyConflictError"),
    (Fault(status=413), 2, "PayloadTooLargeError"),
    (Fault(status=418), 2, "APIError"),
    (Fault(status=503, times=None, retry_after=600), 6, "ServiceUnavailableError"),
    (Fault(status=429, times=None, retry_after=600), 6, "RateLimitError"),
    (Fault(status=502, times=None), 6, "(UpstreamError|DeadlineExceeded)"),
    (Fault(status=500, times=None), 6, "(ServerError|DeadlineExceeded)"),
    (Fault(delay=5.0), 6, "DeadlineExceeded"),
    (Fault(drop=True, times=None), 6, "(ConnectionFailed|DeadlineExceeded)"),
    (Fault(body="not json", content_type="application/json"), 6, "ProtocolError"),
])
def test_gateway_failures_map_to_exit_codes(
    faulty: LocalGateway, capsys: pytest.CaptureFixture[str], fault: Fault, code: int,
    error: str,
) -> None:
    faulty.add_fault(fault)
    status, out, err = run(capsys, "invoke", "tickets", "create_ticket", "title=x",
                           "--timeout", "1")
    assert (status, out) == (code, "")
    assert re.match(f"sark-sync: error: {error}: ", err), err
    assert err.count("\n") == 1


def test_an_unreachable_gateway_exits_6_naming_it(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    with LocalGateway() as stopped:
        url = stopped.url
    monkeypatch.setenv("SARK_TIMEOUT", "1")
    status, out, err = run(capsys, "servers", "--url", url)
    assert (status, out) == (6, "")
    # Connection refused is retried, so the deadline may end the call first.
    assert re.match("sark-sync: error: (ConnectionFailed|DeadlineExceeded): ", err), err


def test_no_gateway_url_is_a_configuration_error(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SARK_GATEWAY_URL", raising=False)
    assert run(capsys, "servers") == (
        2, "", "sark-sync: error: no gateway URL: pass --url or set SARK_GATEWAY_URL\n")
    status, _, err = run(capsys, "servers", "--url", "ftp://example.org")
    assert status == 2 and err.startswith("sark-sync: error: ConfigurationError: ")


def test_flags_win_over_variables_and_go_before_or_after_the_subcommand(
    gateway: LocalGateway, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    url = gateway.url
    monkeypatch.setenv("SARK_GATEWAY_URL", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.setenv("SARK_API_KEY", "wrong-key")
    for argv in (["--url", url, "--api-key", API_KEY, "servers"],
                 ["servers", "--url", url, "--api-key", API_KEY],
                 ["--url", url, "servers", "--api-key", API_KEY]):
        assert run(capsys, *argv)[0] == 0
    assert run(capsys, "--url", url, "servers")[0] == 3  # the key from the environment


def test_sark_timeout_bounds_each_call(
    faulty: LocalGateway, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SARK_TIMEOUT", "0.3")
    faulty.add_fault(Fault(delay=5.0))
    status, _, err = run(capsys, "invoke", "tickets", "create_ticket", "title=x")
    assert status == 6 and "DeadlineExceeded" in err and "timeout=0.3" in err


def test_client_options_do_not_apply_to_serve_or_demo(
    capsys: pytest.CaptureFixture[str]
) -> None:
    for argv in (["--url", "http://127.0.0.1:1", "serve"], ["--json", "demo"]):
        with pytest.raises(SystemExit) as info:
            cli.main(argv)
        assert info.value.code == 2
        assert "does not apply to" in capsys.readouterr().err


# -- events ----------------------------------------------------------------------------------


def test_events_replays_from_an_id_filters_by_type_and_stops_after_count(
    gateway: LocalGateway, capsys: pytest.CaptureFixture[str], users: DemoUsers
) -> None:
    run(capsys, "invoke", "payroll", "salary_report", "dept=x", "--user-token", users.bob)
    start = gateway.last_event_id - 1
    run(capsys, "invoke", "demo", "echo", "text=hi")
    status, out, err = run(capsys, "events", "--last-event-id", str(start), "--types",
                           "tool_invoked,authorization_denied", "--count", "2")
    lines = out.splitlines()
    assert (status, err, len(lines)) == (0, "", 2)
    assert lines[0].split()[:2] == [str(start + 1), "authorization_denied"]
    assert lines[1].split()[:2] == [str(start + 2), "tool_invoked"]
    assert '"principal": "alice"' in lines[1]


def test_events_json_prints_one_json_object_per_line(
    gateway: LocalGateway, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, _ = run(capsys, "--json", "events", "--last-event-id", "0", "--count", "3")
    events = [json.loads(line) for line in out.splitlines()]
    assert status == 0 and [e["id"] for e in events] == ["1", "2", "3"]
    assert events[0] == {"id": "1", "type": "server_registered", "data": {"server": "demo"}}


@pytest.mark.parametrize("argv", [["--count", "0"], ["--types", "bad type!"]])
def test_events_with_bad_arguments_exit_2(
    gateway: LocalGateway, capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    status, out, err = run(capsys, "events", *argv)
    assert (status, out) == (2, "") and err.startswith("sark-sync: error: ")


def test_events_with_a_wrong_key_exit_3(
    gateway: LocalGateway, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(capsys, "events", "--api-key", "wrong-key")[0] == 3


# -- secrets ---------------------------------------------------------------------------------


def test_no_secret_reaches_any_output_even_with_debug(
    gateway: LocalGateway, users: DemoUsers, capfd: pytest.CaptureFixture[str],
) -> None:
    """The API key, the user tokens and a password parameter, through successes, a denial,
    a 401, a filtered call, a failing call and the event stream, with --debug logging."""
    commands: list[list[str]] = [
        ["servers"], ["tools"], ["health"],
        ["invoke", "payroll", "connect_db", "host=db", "user=alice", f"password={PASSWORD}"],
        ["invoke", "payroll", "connect_db", "--json-params",
         json.dumps({"host": "db", "user": "a", "db": {"password": PASSWORD}})],
        ["invoke", "payroll", "salary_report", "dept=x", "--user-token", users.bob],
        ["invoke", "demo", "echo", "text=x", f"token={PASSWORD}"],
        ["servers", "--api-key", PASSWORD + "-as-key"],
    ]
    outputs: list[Any] = []
    for argv in commands:
        cli.main(["--debug", *argv])
        outputs.append(capfd.readouterr())
    every_event = str(gateway.last_event_id)  # events start at 1: replay them all, then stop
    for argv in (["events", "--last-event-id", "0", "--count", every_event],
                 ["--json", "events", "--last-event-id", "0", "--count", every_event]):
        assert cli.main(["--debug", *argv]) == 0
        outputs.append(capfd.readouterr())
    text = "\n".join(part for pair in outputs for part in pair)
    assert "DEBUG" in text  # debug logging was on
    for secret in (API_KEY, users.alice, users.bob, PASSWORD):
        assert secret not in text
