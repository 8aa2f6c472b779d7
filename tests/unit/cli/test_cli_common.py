"""The pure parts of ``sark-sync``: the exit code of each error, settings from flags and
variables, parameter parsing, tables, error lines and argument parsing (no sockets)."""

from __future__ import annotations

import argparse

import pytest

import sark_sync
from sark_sync.cli import _main as cli
from sark_sync.cli._common import (
    Settings,
    UsageError,
    exit_code_for,
    parse_parameters,
    resolve_settings,
)
from sark_sync.cli._errors import one_line
from sark_sync.cli._output import table

E = sark_sync


@pytest.mark.parametrize(("error", "code"), [
    (UsageError("x"), 2),
    (E.ConfigurationError("x"), 2),
    (E.ValidationError("x"), 2),
    (E.TransportNotAvailableError("x"), 2),
    (E.BadRequestError("x", status_code=400), 2),
    (E.IdempotencyConflictError("x", status_code=409), 2),
    (E.PayloadTooLargeError("x", status_code=413), 2),
    (E.APIError("x", status_code=418), 2),
    (E.RPCError("x", code=-32602), 2),
    (E.AuthenticationError("x", status_code=401), 3),
    (E.AuthorizationDenied("x", reason="no"), 4),
    (E.NotFoundError("x", status_code=404), 5),
    (E.ToolExecutionError("x"), 1),
    (E.ConnectionFailed("x"), 6),
    (E.TransportTimeout("x"), 6),
    (E.ProtocolError("x"), 6),
    (E.ProcessStartError("x"), 6),  # it could not start for another reason: EACCES ...
    (E.ProcessExitedError("x", returncode=1), 6),
    (E.RPCError("x", code=-32603), 6),
    (E.DeadlineExceeded("x"), 6),
    (E.CircuitOpenError("x", breaker="b"), 6),
    (E.AuthorizationUnavailable("x"), 6),
    (E.RateLimitError("x", status_code=429), 6),
    (E.APIError("x", status_code=408), 6),
    (E.ServerError("x", status_code=500), 6),
    (E.UpstreamError("x", status_code=502), 6),
    (E.ServiceUnavailableError("x", status_code=503), 6),
    (E.UpstreamTimeoutError("x", status_code=504), 6),
    (E.ClientClosedError("x"), 6),
])
def test_each_error_has_its_exit_code(error: BaseException, code: int) -> None:
    assert exit_code_for(error) == code


def test_settings_come_from_flags_then_variables_and_empty_variables_are_unset() -> None:
    env = {"SARK_GATEWAY_URL": "http://env", "SARK_API_KEY": "env-key",
           "SARK_USER_TOKEN": "", "SARK_TIMEOUT": "2.5"}
    settings = resolve_settings(argparse.Namespace(), env)
    assert settings == Settings("http://env", "env-key", None, 2.5, False, False)
    flags = argparse.Namespace(url="http://flag", api_key="flag-key", user_token="jwt",
                               timeout="1", json=True, debug=True)
    assert resolve_settings(flags, env) == Settings("http://flag", "flag-key", "jwt", 1.0,
                                                    True, True)


@pytest.mark.parametrize("value", ["0", "-1", "soon", "inf", "nan"])
def test_a_timeout_must_be_positive_seconds(value: str) -> None:
    with pytest.raises(UsageError, match="SARK_TIMEOUT must be a number of seconds > 0"):
        resolve_settings(argparse.Namespace(), {"SARK_TIMEOUT": value})


def test_settings_repr_hides_the_credentials() -> None:
    text = repr(Settings("http://u", "the-key", "the-token", None, False, False))
    assert "the-key" not in text and "the-token" not in text and "[secure]" in text


def test_values_parse_as_json_when_they_can_else_as_text() -> None:
    assert parse_parameters(["a=2", "b=2.5", "ok=true", "none=null", "tags=[\"x\"]",
                             'name="2"', "text=hello world", "eq=a=b", "empty="]) == {
        "a": 2, "b": 2.5, "ok": True, "none": None, "tags": ["x"], "name": "2",
        "text": "hello world", "eq": "a=b", "empty": ""}


def test_words_win_over_json_params() -> None:
    assert parse_parameters(["a=3"], '{"a": 1, "b": 2}') == {"a": 3, "b": 2}


@pytest.mark.parametrize(("words", "json_text", "message"), [
    (["hunter2"], None, "parameter 1 is not key=value"),
    (["a=1", "=hunter2"], None, "parameter 2 is not key=value"),
    ([], '{"password": hunter2}', "--json-params is not valid JSON"),
    ([], '["hunter2"]', "--json-params must be a JSON object, not list"),
])
def test_bad_parameters_are_usage_errors_that_never_quote_a_value(
    words: list[str], json_text: str | None, message: str
) -> None:
    with pytest.raises(UsageError, match=message) as info:
        parse_parameters(words, json_text)
    assert "hunter2" not in str(info.value)


def test_a_table_aligns_columns_without_trailing_spaces() -> None:
    assert table(["A", "LONGER"], [["xx", "1"], ["y", ""]]).splitlines() == [
        "A   LONGER", "xx  1", "y"]


def test_a_table_cell_is_one_line_and_bounded() -> None:
    line = table(["D"], [["two\nlines " + "x" * 100]]).splitlines()[1]
    assert line.startswith("two lines x") and line.endswith("...") and len(line) == 60


@pytest.mark.parametrize(("error", "line"), [
    (UsageError("no gateway URL"), "no gateway URL"),
    (E.AuthorizationDenied("policy_denied: no", reason="no", status_code=403, server="s",
                           tool="t", request_id="r", method="POST", url="http://g/x",
                           attempts=1),
     "AuthorizationDenied: policy_denied: no (status_code=403, server=s, tool=t, "
     "request_id=r)"),
    (E.ConnectionFailed("refused", url="http://g/x", attempts=3),
     "ConnectionFailed: refused (url=http://g/x, attempts=3)"),
    (E.ProcessExitedError("exited", returncode=1, stderr_tail="line 1\nline 2"),
     "ProcessExitedError: exited"),
    (ValueError("bug"), "ValueError: bug"),
])
def test_an_error_is_one_line_with_its_useful_context(error: BaseException, line: str
                                                      ) -> None:
    assert one_line(error) == line


@pytest.mark.parametrize("argv", [
    ["--url", "http://g", "invoke", "s", "t", "a=1"],
    ["invoke", "s", "t", "--url", "http://g", "a=1"],
    ["invoke", "--url", "http://g", "s", "t", "a=1"],
])
def test_global_options_go_before_or_after_the_subcommand(argv: list[str]) -> None:
    args = cli._parse(cli._parser(), argv)
    assert (args.url, args.server, args.tool, args.params) == ("http://g", "s", "t", ["a=1"])


def test_local_takes_everything_after_the_double_dash_as_the_command() -> None:
    args = cli._parse(cli._parser(), ["local", "--call", "echo", "text=x", "--json", "--",
                                      "python", "-m", "srv", "--json", "a=b"])
    assert (args.call, args.params, args.json) == ("echo", ["text=x"], True)
    assert args.server_command == ["python", "-m", "srv", "--json", "a=b"]


@pytest.mark.parametrize(("argv", "message"), [
    (["--url", "http://g", "serve"], "--url does not apply to serve"),
    (["--json", "--timeout", "1", "demo"], "--timeout, --json do not apply to demo"),
    (["servers", "x=1"], "unrecognized arguments: x=1"),
    (["bogus"], "invalid choice"),
    (["remote"], "the following arguments are required: URL"),
    (["remote", "http://127.0.0.1:1/mcp", "x=1", "--call"], "expected one argument"),
    (["remote", "http://127.0.0.1:1/mcp", "--api-key", "s3cret", "--user-token=s3cret"],
     "--api-key, --user-token do not apply to remote\n"),
])
def test_usage_errors_exit_2(argv: list[str], message: str,
                             capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        cli.main(argv)
    err = capsys.readouterr().err
    assert info.value.code == 2 and message in err and "s3cret" not in err


def test_every_subcommand_is_registered() -> None:
    assert list(cli.COMMANDS) == ["servers", "tools", "invoke", "events", "health", "local",
                                  "remote", "serve", "demo"]
