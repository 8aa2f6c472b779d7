"""How ``sark-sync`` reports errors under ``--json`` (sark_sync.cli._errors) and the exit
status of a local server that does not exist; no sockets, no processes."""

from __future__ import annotations

import errno
import io
import json
from typing import Any

import pytest

import sark_sync
from sark_sync.cli import _main as cli
from sark_sync.cli._common import UsageError, exit_code_for
from sark_sync.cli._errors import error_document, one_line, report_error, tool_error_document

E = sark_sync


def test_a_gateway_error_document_holds_its_type_message_exit_code_and_context() -> None:
    error = E.RateLimitError("rate_limited: slow down", status_code=429, code="rate_limited",
                             server="tickets", tool="create_ticket", request_id="r-1",
                             retry_after=2.0, attempts=3, method="POST",
                             url="http://gw/api/v1/invoke")
    body = error_document(error, exit_code_for(error))["error"]
    assert list(body)[:3] == ["type", "message", "exit_code"]
    assert body == {"type": "RateLimitError", "message": "rate_limited: slow down",
                    "exit_code": 6, "status_code": 429, "code": "rate_limited",
                    "server": "tickets", "tool": "create_ticket", "request_id": "r-1",
                    "retry_after": 2.0, "attempts": 3,
                    **({"retryable": error.retryable}
                       if isinstance(getattr(error, "retryable", None), bool) else {})}


def test_a_denial_document_carries_the_policys_reason() -> None:
    error = E.AuthorizationDenied("policy_denied: no", reason="clearance", status_code=403,
                                  code="policy_denied", server="s", tool="t")
    body = error_document(error, exit_code_for(error))["error"]
    assert (body["type"], body["exit_code"], body["reason"], body["code"]) == \
        ("AuthorizationDenied", 4, "clearance", "policy_denied")


def test_a_deadline_document_has_its_timeout_to_the_millisecond() -> None:
    error = E.DeadlineExceeded("deadline", timeout=0.49998544, server="sdk",
                               last_error=E.TransportTimeout("t"))
    body = error_document(error, 6)["error"]
    assert (body["timeout"], body["last_error"]) == (0.5, "TransportTimeout")
    assert one_line(error) == ("DeadlineExceeded: deadline (server=sdk, timeout=0.5, "
                               "last_error=TransportTimeout)")


def test_a_local_server_document_names_its_exit_code_but_not_its_stderr() -> None:
    error = E.ProcessExitedError("local MCP server 'x' exited with code 3", returncode=3,
                                 stderr_tail="password=hunter2", server="x")
    body = error_document(error, exit_code_for(error))["error"]
    assert (body["returncode"], body["exit_code"]) == (3, 6)
    assert "hunter2" not in json.dumps(body)


@pytest.mark.parametrize(("url", "shown"), [
    ("http://user:s3cret@gw.example:8080/api/v1/invoke?api_key=s3cret#frag",
     "http://gw.example:8080/api/v1/invoke"),
    ("http://[::1]:9/health", "http://[::1]:9/health"),
    ("http://gw:notaport/x", "(unparsable URL)"),
])
def test_a_connection_failure_shows_its_url_without_credentials(url: str, shown: str
                                                                 ) -> None:
    error = E.ConnectionFailed("could not reach the gateway", url=url, attempts=3)
    body = error_document(error, 6)["error"]
    assert body["url"] == shown
    assert one_line(error).startswith(f"ConnectionFailed: could not reach the gateway (url={shown}")
    assert "s3cret" not in json.dumps(body) + one_line(error)


def test_other_errors_are_their_type_and_first_line() -> None:
    assert error_document(UsageError("no gateway URL\nmore"), 2) == {
        "error": {"type": "UsageError", "message": "no gateway URL", "exit_code": 2}}
    assert error_document(ValueError(""), 1) == {
        "error": {"type": "ValueError", "message": "no message", "exit_code": 1}}
    assert error_document(KeyboardInterrupt(), 130) == {
        "error": {"type": "Interrupted", "message": "interrupted", "exit_code": 130}}


def test_a_tool_error_document_names_the_call() -> None:
    assert tool_error_document("demo", "fail", "r-9", 1) == {"error": {
        "type": "ToolExecutionError",
        "message": "tool demo/fail reported an error (the result is on standard output)",
        "exit_code": 1, "server": "demo", "tool": "fail", "request_id": "r-9"}}


@pytest.mark.parametrize("as_json", [True, False])
def test_report_error_writes_one_line(as_json: bool) -> None:
    err = io.StringIO()
    report_error(E.NotFoundError("not_found: x", status_code=404), 5, as_json, err)
    text = err.getvalue()
    assert text.count("\n") == 1 and text.endswith("\n")
    if as_json:
        assert json.loads(text)["error"]["exit_code"] == 5
    else:
        assert text == "sark-sync: error: NotFoundError: not_found: x (status_code=404)\n"


def _start_error(cause: OSError) -> E.ProcessStartError:
    try:
        raise E.ProcessStartError("could not start", command="x") from cause
    except E.ProcessStartError as exc:
        return exc


def test_a_local_server_command_that_does_not_exist_is_not_found() -> None:
    missing = _start_error(FileNotFoundError(errno.ENOENT, "No such file or directory"))
    forbidden = _start_error(PermissionError(errno.EACCES, "Permission denied"))
    assert (exit_code_for(missing), exit_code_for(forbidden)) == (5, 6)


@pytest.mark.parametrize(("argv", "message"), [
    (["--json", "bogus"], "argument COMMAND: invalid choice: 'bogus'"),
    (["invoke", "--json"], "the following arguments are required: SERVER, TOOL"),
    (["--json", "local", "--call", "x", "--idempotency-key"],
     "argument --idempotency-key: expected one argument"),
])
def test_usage_errors_under_json_are_a_document_on_stderr(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        cli.main(argv)
    out, err = capsys.readouterr()
    body: Any = json.loads(err)["error"]
    assert (info.value.code, out, body["type"], body["exit_code"]) == (2, "", "UsageError", 2)
    assert body["message"].startswith(message)


def test_json_in_a_local_servers_command_does_not_make_errors_json(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit):
        cli.main(["local", "--bogus", "--", "server", "--json"])
    err = capsys.readouterr().err
    assert err.startswith("usage: sark-sync ")
    assert err.endswith("sark-sync: error: unrecognized arguments: --bogus\n")


def test_a_usage_error_of_a_command_under_json_is_a_document(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("SARK_GATEWAY_URL", raising=False)
    assert cli.main(["--json", "invoke", "s", "t", "--idempotency-key", "k"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert json.loads(err) == {"error": {
        "type": "UsageError", "message": "no gateway URL: pass --url or set SARK_GATEWAY_URL",
        "exit_code": 2}}
