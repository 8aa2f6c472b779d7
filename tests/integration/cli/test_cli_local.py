"""``sark-sync local``: list and call the tools of a real stdio MCP server (the demo server,
a child process), and its errors' exit codes; no gateway involved."""

from __future__ import annotations

import json

import pytest
from support import child_env, demo_server_command, misbehave_command

from sark_sync.cli import _main as cli


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = cli.main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def _local(*argv: str) -> list[str]:
    env = [f"--env={k}={v}" for k, v in child_env().items()]
    return ["local", *argv, *env, "--", *demo_server_command()]


def test_local_lists_the_tools_of_a_stdio_server(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = run(capsys, *_local())
    lines = out.splitlines()
    assert (status, err) == (0, "")
    assert lines[0].split() == ["TOOL", "RETRY-SAFE", "PARAMETERS", "DESCRIPTION"]
    assert lines[1].split() == ["echo", "yes", "text", "Return", "the", "text."]
    assert len(lines) == 13


def test_local_calls_a_tool_and_prints_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, *_local("--call", "add", "a=20", "b=22")) == (0, "42\n", "")
    status, out, _ = run(capsys, "--json", *_local("--call", "echo", "text=hi"))
    assert status == 0 and json.loads(out)["content"] == [{"type": "text", "text": "hi"}]
    status, out, _ = run(capsys, *_local("--call", "fail", "message=boom"))
    assert (status, out) == (1, "boom\n")


@pytest.mark.parametrize(("argv", "code"), [
    (_local("--call", "nosuch"), 5),
    (["local", "--", "/nonexistent/mcp-server"], 5),  # no such server, as a gateway's 404
    (["local", *(f"--env={k}={v}" for k, v in child_env().items()), "--",
      *misbehave_command("exit_at_start")], 6),  # it exists, but is unavailable
    (["local"], 2),
    (_local("--call", "echo", "bad"), 2),
    (["local", "text=x", "--", "true"], 2),
    (["local", "--env", "NOEQUALS", "--", "true"], 2),
])
def test_local_errors_map_to_exit_codes(
    capsys: pytest.CaptureFixture[str], argv: list[str], code: int
) -> None:
    status, out, err = run(capsys, *argv)
    assert (status, out) == (code, "")
    assert err.startswith("sark-sync: error: ") and err.count("\n") == 1
