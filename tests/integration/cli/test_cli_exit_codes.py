"""One exit status per kind of error, whatever kind of server the tool is on: a built-in
server of the gateway, a stdio server the gateway hosts, a local stdio server (``local``) and
an MCP server by URL (``remote``). Each case is ``sark-sync --json ...`` in a child process
against real servers (a LocalGateway, the demo and misbehaving stdio servers, the official
MCP SDK server, a loopback HTTP server answering one status); its error is one JSON document
on standard error whose ``exit_code`` is the process's, and docs/CLI.md's table says the same.
"""

from __future__ import annotations

import json
import re
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Callable

import pytest
from cli_kinds import API_KEY, DEMO_SERVER, ROOT, KindsGateway, json_error, run_cli
from realcomp.fixtures import McpHttpServer
from support import misbehave_command

from sark_sync.testing import Fault, LocalGateway

#: Columns: where the tool is; rows: what went wrong. Docs/CLI.md's table holds the same.
GATEWAY, HOSTED, LOCAL, REMOTE = "gateway", "hosted stdio", "local", "remote"
EXPECTED: dict[str, dict[str, int]] = {
    "unknown tool": {GATEWAY: 5, HOSTED: 5, LOCAL: 5, REMOTE: 5},
    "server not found": {GATEWAY: 5, LOCAL: 5, REMOTE: 5},
    "timeout": {GATEWAY: 6, HOSTED: 6, LOCAL: 6, REMOTE: 6},
    "denied": {GATEWAY: 4, HOSTED: 4, REMOTE: 4},
    "connection failure": {GATEWAY: 6, HOSTED: 6, LOCAL: 6, REMOTE: 6},
    "authentication": {GATEWAY: 3, HOSTED: 3, REMOTE: 3},
}
TIMEOUTS = {"DeadlineExceeded", "TransportTimeout"}


def closed_port_url(path: str = "") -> str:
    with socket.socket() as probe:  # a loopback port nobody listens on
        probe.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{probe.getsockname()[1]}{path}"


def local(*argv: str, command: list[str] | None = None) -> list[str]:
    return ["local", *argv, f"--env=PYTHONPATH={ROOT}", "--", *(command or DEMO_SERVER)]


#: (error, server kind, arguments after --json, environment changes, error types). An
#: argument "{url}" is the gateway's URL; "{bob}" in the environment is the viewer's token.
GATEWAY_CASES = [
    ("unknown tool", GATEWAY, ["invoke", "tools", "nosuch"], {}, {"NotFoundError"}),
    ("unknown tool", HOSTED, ["invoke", "stdio", "nosuch"], {}, {"NotFoundError"}),
    ("server not found", GATEWAY, ["invoke", "nosuch", "echo"], {}, {"NotFoundError"}),
    ("timeout", GATEWAY, ["--timeout", "1", "invoke", "tools", "echo", "text=x"], {},
     TIMEOUTS),
    ("timeout", HOSTED, ["--timeout", "1", "invoke", "stdio", "slow", "seconds=2"], {},
     TIMEOUTS),
    ("denied", GATEWAY, ["invoke", "vault", "read"], {"SARK_USER_TOKEN": "{bob}"},
     {"AuthorizationDenied"}),
    ("denied", HOSTED, ["invoke", "stdio_vault", "echo", "text=x"],
     {"SARK_USER_TOKEN": "{bob}"}, {"AuthorizationDenied"}),
    ("connection failure", GATEWAY, ["--timeout", "5", "invoke", "tools", "echo", "text=x"],
     {"SARK_GATEWAY_URL": "{closed}"}, {"ConnectionFailed"}),
    ("connection failure", HOSTED, ["invoke", "stdio_crash", "crash"], {}, {"UpstreamError"}),
    ("authentication", GATEWAY, ["invoke", "tools", "echo", "text=x"],
     {"SARK_API_KEY": "wrong-key"}, {"AuthenticationError"}),
    ("authentication", HOSTED, ["invoke", "stdio", "echo", "text=x"],
     {"SARK_API_KEY": "wrong-key"}, {"AuthenticationError"}),
]
LOCAL_CASES = [
    ("unknown tool", local("--call", "nosuch"), {"NotFoundError"}),
    ("server not found", ["local", "--", "/nonexistent/mcp-server"], {"ProcessStartError"}),
    ("timeout", local("--timeout", "1", "--call", "slow", "seconds=10"), TIMEOUTS),
    ("connection failure", local(command=misbehave_command("exit_at_start")),
     {"ProcessExitedError"}),
]
#: (error, HTTP status every request gets, error type): remote servers that refuse.
REMOTE_STATUS_CASES = [
    ("server not found", 404, {"NotFoundError"}),
    ("denied", 403, {"AuthorizationDenied"}),
    ("authentication", 401, {"AuthenticationError"}),
]


@pytest.fixture
def delayed_tools(kinds_gateway: KindsGateway) -> Iterator[None]:
    """The built-in server's next invoke answers after 2 s (the timeout case: 1 s)."""
    fault = kinds_gateway.slow(2.0)
    yield
    kinds_gateway.gateway.clear_faults()
    assert fault.hits <= 1


def check(argv: list[str], env: dict[str, str], error_kind: str, server_kind: str,
          types: set[str], secrets: tuple[str, ...] = ()) -> None:
    done = run_cli("--json", *argv, env=env)
    error = json_error(done)
    assert (done.returncode, done.stdout) == (EXPECTED[error_kind][server_kind], "")
    assert error["type"] in types, error
    for secret in secrets:
        assert secret not in done.stderr


@pytest.mark.parametrize(("error_kind", "server_kind", "argv", "changes", "types"),
                         GATEWAY_CASES, ids=[f"{c[1]}-{c[0]}" for c in GATEWAY_CASES])
def test_errors_through_the_gateway(
    kinds_gateway: KindsGateway, request: pytest.FixtureRequest, error_kind: str,
    server_kind: str, argv: list[str], changes: dict[str, str], types: set[str],
) -> None:
    if (error_kind, server_kind) == ("timeout", GATEWAY):
        request.getfixturevalue("delayed_tools")
    names = {"{bob}": kinds_gateway.bob, "{closed}": closed_port_url()}
    env = kinds_gateway.env(**{k: names.get(v, v) for k, v in changes.items()})
    check(argv, env, error_kind, server_kind, types,
          secrets=(API_KEY, kinds_gateway.alice, kinds_gateway.bob))


@pytest.mark.parametrize(("error_kind", "argv", "types"), LOCAL_CASES,
                         ids=[c[0] for c in LOCAL_CASES])
def test_errors_of_a_local_stdio_server(
    kinds_gateway: KindsGateway, error_kind: str, argv: list[str], types: set[str],
) -> None:
    check(argv, kinds_gateway.env(), error_kind, LOCAL, types)


@pytest.mark.parametrize(("error_kind", "status", "types"), REMOTE_STATUS_CASES,
                         ids=[c[0] for c in REMOTE_STATUS_CASES])
def test_errors_of_a_remote_server_that_refuses(
    kinds_gateway: KindsGateway, status_server: Callable[[int], str], error_kind: str,
    status: int, types: set[str],
) -> None:
    check(["remote", status_server(status), "--call", "echo", "text=x"], kinds_gateway.env(),
          error_kind, REMOTE, types)


def test_a_remote_server_that_cannot_be_reached(kinds_gateway: KindsGateway) -> None:
    check(["remote", closed_port_url("/mcp"), "--timeout", "5"], kinds_gateway.env(),
          "connection failure", REMOTE, {"ConnectionFailed"})


@pytest.mark.realcomp
@pytest.mark.parametrize(("error_kind", "argv", "types"), [
    ("unknown tool", ["--call", "nosuch"], {"NotFoundError"}),
    ("timeout", ["--timeout", "0.5", "--call", "slow", "seconds=30"], TIMEOUTS),
])
def test_errors_of_a_remote_mcp_server(
    kinds_gateway: KindsGateway, mcp_http_server: Callable[..., McpHttpServer],
    error_kind: str, argv: list[str], types: set[str],
) -> None:
    check(["remote", mcp_http_server("stateful").url, *argv], kinds_gateway.env(),
          error_kind, REMOTE, types)


@pytest.mark.realcomp
def test_an_unknown_tool_of_a_hosted_official_sdk_server_exits_5_too(
    kinds_gateway: KindsGateway, sdk_gateway: LocalGateway,
) -> None:
    """The official MCP Python SDK answers an unknown tool with an ``isError`` result, not an
    error: the gateway refuses a tool the server does not list (404) before calling it, so
    the exit status is the unknown tool's, as for the demo server (a JSON-RPC error)."""
    env = kinds_gateway.env(SARK_GATEWAY_URL=sdk_gateway.url)
    check(["invoke", "sdk", "nosuch"], env, "unknown tool", HOSTED, {"NotFoundError"},
          secrets=(API_KEY, kinds_gateway.alice))
    known = run_cli("--json", "invoke", "sdk", "echo", "text=x", env=env)
    assert (known.returncode, json.loads(known.stdout)["content"]) == \
        (0, [{"type": "text", "text": "x"}])
    assert sdk_gateway.tool_runs("sdk", "nosuch") == 0


def test_every_cell_of_the_table_is_tested() -> None:
    tested = {(c[0], c[1]) for c in GATEWAY_CASES}
    tested |= {(c[0], LOCAL) for c in LOCAL_CASES}
    tested |= {(c[0], REMOTE) for c in REMOTE_STATUS_CASES}
    tested |= {("connection failure", REMOTE), ("unknown tool", REMOTE), ("timeout", REMOTE)}
    assert tested == {(error, kind) for error, row in EXPECTED.items() for kind in row}


def test_docs_cli_tabulates_the_same_exit_codes() -> None:
    """docs/CLI.md's table "One exit status per error" (rows: error; columns: the kinds)."""
    text = (Path(ROOT) / "docs" / "CLI.md").read_text(encoding="utf-8")
    section = text.split("### One exit status per error", 1)[1].split("\n#", 1)[0]
    rows = [[cell.strip() for cell in line.strip().strip("|").split("|")]
            for line in section.splitlines() if line.startswith("|")]
    header, body = rows[0], rows[2:]
    kinds = [GATEWAY, HOSTED, LOCAL, REMOTE]
    assert len(header) == 1 + len(kinds)
    documented = {}
    for row in body:
        codes = {kind: int(cell) for kind, cell in zip(kinds, row[1:])
                 if re.fullmatch(r"[0-9]+", cell)}
        documented[row[0]] = codes
    assert documented == EXPECTED


@pytest.mark.parametrize("argv", [
    ["invoke", "stdio", "fail", "message=disk full"],
    local("--call", "fail", "message=disk full"),
], ids=[HOSTED, LOCAL])
def test_a_tool_error_under_json_is_its_result_on_stdout_and_a_document_on_stderr(
    kinds_gateway: KindsGateway, argv: list[str],
) -> None:
    done = run_cli("--json", *argv, env=kinds_gateway.env())
    error = json_error(done)
    result = json.loads(done.stdout)
    assert (done.returncode, result["is_error"], result["content"]) == \
        (1, True, [{"type": "text", "text": "disk full"}])
    assert (error["type"], error["tool"], error["server"]) == \
        ("ToolExecutionError", "fail", result["server"])
    assert error.get("request_id") == result["request_id"]


def test_a_rate_limit_under_json_carries_its_retry_after(kinds_gateway: KindsGateway) -> None:
    kinds_gateway.gateway.add_fault(Fault(server="tools", status=429, retry_after=0.2,
                                          times=None))
    try:
        done = run_cli("--json", "invoke", "tools", "echo", "text=x", env=kinds_gateway.env())
    finally:
        kinds_gateway.gateway.clear_faults()
    error = json_error(done)
    assert (done.returncode, done.stdout) == (6, "")
    assert (error["type"], error["status_code"], error["code"], error["retry_after"]) == \
        ("RateLimitError", 429, "rate_limited", 0.2)
    assert (error["server"], error["tool"]) == ("tools", "echo") and error["request_id"]
    assert API_KEY not in done.stderr and kinds_gateway.alice not in done.stderr
