"""``sark-sync remote URL``: list and call the tools of the official MCP server (mcp 2.3.0,
over Streamable HTTP, a child process) in-process through ``main()`` and as a child process,
what the server saw on the wire (through the recording proxy), and the exit codes of its
errors. No gateway is involved, and none of the gateway's credentials reach the server."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import pytest
from realcomp.fixtures import McpHttpServer
from realcomp.recording_proxy import RecordingProxy

from sark_sync.cli import _main as cli

pytestmark = [pytest.mark.realcomp, pytest.mark.timeout(60)]

SECRET = "Bearer s3cret-token-value"
#: Bound for one command against a loopback server.
WAIT = 30.0
#: Tools of the official server's script that these tests use (it may offer more).
TOOLS = {"echo", "add", "fail", "slow", "whoami", "crash", "counter"}
#: What opens a session, whichever protocol version is negotiated.
HANDSHAKE = {"server/discover", "initialize", "notifications/initialized"}


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = cli.main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


#: What a 2026-07-28 session sends on a stream of its own, concurrently with the calls, to
#: hear of list changes: its place among the CLI's requests is not the CLI's to decide.
BACKGROUND = {"subscriptions/listen"}


def methods(proxy: RecordingProxy) -> list[str]:
    """The JSON-RPC method of every POST the server saw, in order, but the background ones."""
    seen = []
    for exchange in proxy.requests:
        if exchange.method == "POST" and exchange.body:
            body: Any = json.loads(exchange.body)
            if body.get("method") not in BACKGROUND:
                seen.append(body.get("method", "(response)"))
    return seen


def after_handshake(proxy: RecordingProxy) -> list[str]:
    """The methods the server saw after the handshake (which must come first)."""
    seen = methods(proxy)
    handshake = 0
    while handshake < len(seen) and seen[handshake] in HANDSHAKE:
        handshake += 1
    assert handshake >= 1, seen
    return seen[handshake:]


def session_ids(proxy: RecordingProxy) -> set[str]:
    """The Mcp-Session-Id values the server handed out (none: it kept no session)."""
    return {x.response_header("Mcp-Session-Id") or "" for x in proxy.requests} - {""}


@pytest.fixture(autouse=True)
def _no_sark_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [n for n in os.environ if n.startswith("SARK_")]:
        monkeypatch.delenv(name)


@pytest.mark.parametrize("mode", ["stateful", "stateless-json"])
def test_remote_lists_the_tools_of_a_server_by_url_in_one_session_ended_by_delete(
    mode: str, mcp_http_server: Callable[..., McpHttpServer],
    recording_proxy: Callable[[str], RecordingProxy], capsys: pytest.CaptureFixture[str],
) -> None:
    proxy = recording_proxy(mcp_http_server(mode).url)
    status, out, err = run(capsys, "remote", proxy.url)
    lines = out.splitlines()
    assert (status, err) == (0, "")
    assert lines[0].split() == ["TOOL", "RETRY-SAFE", "PARAMETERS", "DESCRIPTION"]
    assert lines[1].split() == ["echo", "yes", "text", "Return", "the", "text", "unchanged."]
    assert {line.split()[0] for line in lines[1:]} >= TOOLS
    assert after_handshake(proxy) == ["tools/list"]
    deletes = [(x.header("Mcp-Session-Id"), x.status) for x in proxy.requests
               if x.method == "DELETE"]
    assert deletes == [(session_id, 200) for session_id in session_ids(proxy)]


@pytest.mark.parametrize("mode", ["stateful", "stateless-json"])
def test_remote_calls_a_tool_and_prints_its_text_or_json(
    mode: str, mcp_http_server: Callable[..., McpHttpServer],
    capsys: pytest.CaptureFixture[str],
) -> None:
    url = mcp_http_server(mode).url
    assert run(capsys, "remote", url, "--call", "echo", "text=hello world") == \
        (0, "hello world\n", "")
    status, out, err = run(capsys, "--json", "remote", url, "--call", "add",
                           "--json-params", '{"a": 2, "b": 3}')
    assert (status, err) == (0, "")
    result = json.loads(out)
    assert (result["tool"], result["is_error"], result["structured"]) == \
        ("add", False, {"sum": 5.0})
    assert result["server"] == "127.0.0.1"  # the URL's host, unless --name says otherwise
    status, out, _ = run(capsys, "--json", "remote", url, "--name", "sdk", "--call", "add",
                         "a=1", "b=1")
    assert (status, json.loads(out)["server"]) == (0, "sdk")


@pytest.mark.parametrize(("version", "handshake"), [
    ("auto", ["server/discover"]),
    ("2025-11-25", ["initialize", "notifications/initialized"]),
])
def test_protocol_version_picks_the_revision_the_server_sees(
    version: str, handshake: list[str], mcp_http_server: Callable[..., McpHttpServer],
    recording_proxy: Callable[[str], RecordingProxy], capsys: pytest.CaptureFixture[str],
) -> None:
    proxy = recording_proxy(mcp_http_server("stateful").url)
    assert run(capsys, "remote", proxy.url, "--protocol-version", version, "--call", "echo",
               "text=hi") == (0, "hi\n", "")
    assert methods(proxy) == [*handshake, "tools/list", "tools/call"]


@pytest.mark.parametrize("transport", ["auto", "sse"])
def test_a_legacy_http_sse_server_is_reached_by_fallback_or_on_request(
    transport: str, mcp_http_server: Callable[..., McpHttpServer],
    capsys: pytest.CaptureFixture[str],
) -> None:
    url = mcp_http_server("legacy-sse").url
    assert run(capsys, "remote", url, "--transport", transport, "--call", "add", "a=20",
               "b=22") == (0, '{\n  "sum": 42.0\n}\n', "")


@pytest.mark.parametrize(("path", "argv", "status", "message"), [
    ("/sse", ["--transport", "websocket"], 2, "ConfigurationError: transport must be one of "
     "auto, streamable-http, sse, not 'websocket'"),
    ("/sse", ["--protocol-version", "1999-01-01"], 2, "ConfigurationError: protocol_version "
     "must be 'auto' or one of 2026-07-28, 2025-11-25, 2025-06-18, 2025-03-26, 2024-11-05, "
     "not '1999-01-01'"),
    ("/sse", ["--transport", "streamable-http"], 2, "APIError: "),  # POST /sse: 405
    ("/nope", [], 5, "NotFoundError: "),  # neither transport is served there
])
def test_a_url_transport_or_version_the_server_cannot_use_is_refused(
    path: str, argv: list[str], status: int, message: str,
    mcp_http_server: Callable[..., McpHttpServer], capsys: pytest.CaptureFixture[str],
) -> None:
    url = mcp_http_server("legacy-sse").url
    assert url.endswith("/sse")
    result = run(capsys, "remote", url[:-len("/sse")] + path, *argv)
    assert result[:2] == (status, "")
    assert result[2].startswith(f"sark-sync: error: {message}") and result[2].count("\n") == 1


def test_a_tool_error_prints_the_output_and_exits_1(
    mcp_http_server: Callable[..., McpHttpServer], capsys: pytest.CaptureFixture[str],
) -> None:
    status, out, err = run(capsys, "remote", mcp_http_server("stateful").url, "--name", "sdk",
                           "--call", "fail", "message=disk full")
    assert (status, out) == (1, "Error executing tool fail: disk full\n")
    assert err == "sark-sync: error: tool sdk/fail reported an error (its output is above)\n"


def test_an_unknown_tool_exits_5_naming_the_tools_and_calls_nothing(
    mcp_http_server: Callable[..., McpHttpServer],
    recording_proxy: Callable[[str], RecordingProxy], capsys: pytest.CaptureFixture[str],
) -> None:
    proxy = recording_proxy(mcp_http_server("stateful").url)
    status, out, err = run(capsys, "remote", proxy.url, "--name", "sdk", "--call", "nosuch")
    assert (status, out) == (5, "")
    assert err.startswith("sark-sync: error: NotFoundError: remote MCP server 'sdk' has no "
                          "tool 'nosuch' (its tools: echo, add, fail, slow, whoami, crash, ")
    assert err.count("\n") == 1
    assert after_handshake(proxy) == ["tools/list"]


@pytest.mark.timeout(20)
def test_a_call_past_the_timeout_exits_6_within_the_bound(
    mcp_http_server: Callable[..., McpHttpServer], capsys: pytest.CaptureFixture[str],
) -> None:
    url = mcp_http_server("stateful").url
    started = time.monotonic()
    status, out, err = run(capsys, "remote", url, "--name", "sdk", "--timeout", "0.5",
                           "--call", "slow", "seconds=30")
    elapsed = time.monotonic() - started
    assert (status, out) == (6, "")
    assert err.startswith("sark-sync: error: DeadlineExceeded: ") and err.count("\n") == 1
    assert "server=sdk, timeout=0.5" in err
    assert elapsed < 5.0  # the handshake, the list, 0.5 s of call, the cancellation, DELETE


@pytest.mark.timeout(20)
@pytest.mark.parametrize("mode", ["stateful", "stateless-json"])
def test_a_server_that_dies_mid_call_exits_6_at_once(
    mode: str, mcp_http_server: Callable[..., McpHttpServer],
    capsys: pytest.CaptureFixture[str],
) -> None:
    server = mcp_http_server(mode)
    started = time.monotonic()
    status, out, err = run(capsys, "remote", server.url, "--protocol-version", "2025-11-25",
                           "--call", "crash")
    assert (status, out) == (6, "")
    assert err.startswith("sark-sync: error: ConnectionFailed: ") and err.count("\n") == 1
    assert time.monotonic() - started < 10.0  # not the 30 s timeout
    assert server.proc.wait(5) == 1


def test_a_server_that_cannot_be_reached_exits_6(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as probe:  # a loopback port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    status, out, err = run(capsys, "remote", f"http://127.0.0.1:{port}/mcp", "--timeout", "5")
    assert (status, out) == (6, "")
    assert err.startswith("sark-sync: error: ConnectionFailed: ") and err.count("\n") == 1


def test_headers_from_flags_and_the_variable_reach_the_server_and_are_never_printed(
    mcp_http_server: Callable[..., McpHttpServer],
    recording_proxy: Callable[[str], RecordingProxy], capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    proxy = recording_proxy(mcp_http_server("stateful").url)
    monkeypatch.setenv("SARK_MCP_HEADERS", "authorization: Bearer from-env\n\nX-Tenant: t1\n")
    status, out, err = run(capsys, "remote", proxy.url, "--header", f"Authorization: {SECRET}",
                           "--call", "echo", "text=hi")
    assert (status, out, err) == (0, "hi\n", "")
    assert after_handshake(proxy) == ["tools/list", "tools/call"]
    for exchange in proxy.requests:  # the handshake, the calls, DELETE if any
        assert exchange.header("Authorization") == SECRET  # the flag wins over the variable
        assert exchange.header("X-Tenant") == "t1"
    assert SECRET not in out + err


def test_the_gateway_credentials_are_refused_as_flags_and_never_sent_from_the_environment(
    mcp_http_server: Callable[..., McpHttpServer],
    recording_proxy: Callable[[str], RecordingProxy], capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    proxy = recording_proxy(mcp_http_server("stateless-json").url)
    status, out, err = run(capsys, "--api-key", "k", "--user-token", "t", "remote", proxy.url)
    assert (status, out) == (2, "")
    assert err == ("sark-sync: error: --api-key, --user-token do not apply to remote: the "
                   "server is the URL; send its credentials with --header\n")
    assert proxy.requests == []
    monkeypatch.setenv("SARK_API_KEY", "gateway-key")
    monkeypatch.setenv("SARK_USER_TOKEN", "gateway-user-token")
    monkeypatch.setenv("SARK_GATEWAY_URL", "http://127.0.0.1:9")
    assert run(capsys, "remote", proxy.url, "--call", "echo", "text=x") == (0, "x\n", "")
    for exchange in proxy.requests:
        assert exchange.header("X-API-Key") is None
        assert exchange.header("Authorization") is None


@pytest.mark.parametrize(("argv", "message"), [
    (["--header", f"Authorization {SECRET}"],
     "--header 1 is not 'Name: value' with a valid header name"),
    (["--header", "X-Ok: 1", "--header", "Mcp-Session-Id: abc"],
     "--header 2: Mcp-Session-Id is set by the MCP transport itself"),
    (["--header", f"Authorization: {SECRET}\x7f"],
     "--header 1: the value of Authorization has a control character at index 25; header "
     "values are 1 to 8192 visible ASCII characters, with spaces allowed only between them"),
    (["text=x"], "parameters need --call TOOL"),
])
def test_a_bad_command_line_exits_2_before_any_request_without_quoting_a_header_value(
    mcp_http_server: Callable[..., McpHttpServer],
    recording_proxy: Callable[[str], RecordingProxy], capsys: pytest.CaptureFixture[str],
    argv: list[str], message: str,
) -> None:
    proxy = recording_proxy(mcp_http_server("stateless-json").url)
    status, out, err = run(capsys, "remote", proxy.url, *argv)
    assert (status, out, err) == (2, "", f"sark-sync: error: {message}\n")
    assert "s3cret" not in err and proxy.requests == []


def sark_sync(*argv: str) -> list[str]:
    return [sys.executable, "-m", "sark_sync.cli", *argv]


def child_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SARK_")}
    env["PYTHONPATH"] = str(Path(cli.__file__).resolve().parents[2])
    env.update(extra)
    return env


def test_remote_as_a_child_process_prints_json_and_one_line_errors(
    mcp_http_server: Callable[..., McpHttpServer],
    recording_proxy: Callable[[str], RecordingProxy],
) -> None:
    proxy = recording_proxy(mcp_http_server("stateful").url)
    done = subprocess.run(sark_sync("remote", proxy.url, "--json"),
                          env=child_env(SARK_MCP_HEADERS=f"Authorization: {SECRET}"),
                          capture_output=True, text=True, timeout=WAIT, check=False)
    assert (done.returncode, done.stderr) == (0, "")
    assert {tool["tool_name"] for tool in json.loads(done.stdout)} >= TOOLS
    assert {x.header("Authorization") for x in proxy.requests} == {SECRET}
    done = subprocess.run(sark_sync("remote", proxy.url, "--call", "echo", "text=hi"),
                          env=child_env(SARK_MCP_HEADERS=f"Authorization: {SECRET}\x7f"),
                          capture_output=True, text=True, timeout=WAIT, check=False)
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == ("sark-sync: error: SARK_MCP_HEADERS line 1: the value of "
                           "Authorization has a control character at index 25; header values "
                           "are 1 to 8192 visible ASCII characters, with spaces allowed only "
                           "between them\n")
    done = subprocess.run(sark_sync("--json", "remote", proxy.url, "--call", "add", "a=20",
                                    "b=22"), env=child_env(), capture_output=True, text=True,
                          timeout=WAIT, check=False)
    assert (done.returncode, done.stderr) == (0, "")
    assert json.loads(done.stdout)["structured"] == {"sum": 42.0}
