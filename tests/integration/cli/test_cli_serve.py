"""``sark-sync serve``: as a child process (``python -m sark_sync.cli``) and in-process
(``cli.main``), started and stopped by signals, with config files good and bad."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, Callable

import pytest
import requests
from local_gateway_helpers import (
    SSE,
    WAIT,
    EventReader,
    gateway_threads,
)
from support import read_line

from sark_sync.cli import _main as cli

# -- sark-sync serve -------------------------------------------------------------------------


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_serve_command_prints_the_url_and_exits_0_on_signal(
    tmp_path: Path, http: requests.Session, signum: int
) -> None:
    config = tmp_path / "gateway.json"
    config.write_text(
        json.dumps(
            {
                "api_keys": ["from-config"],
                "jwt_secret": "cfg-secret",
                "servers": [
                    {
                        "name": "pg",
                        "sensitivity_level": "high",
                        "authorized_teams": ["data"],
                        "tools": ["add"],
                    }
                ],
            }
        )
    )
    command = [
        sys.executable,
        "-m",
        "sark_sync.cli",
        "serve",
        "--port",
        "0",
        "--config",
        str(config),
        "--api-key",
        "from-cli",
    ]
    env = {**os.environ, "PYTHONPATH": str(Path(cli.__file__).resolve().parents[2])}
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    ) as proc:
        try:
            url = read_line(proc.stdout).strip()
            assert url.startswith("http://127.0.0.1:")
            assert http.get(f"{url}/health").json()["servers"] == 1
            for key in ("from-config", "from-cli"):
                body = {"server": "pg", "tool": "add", "parameters": {"a": 2, "b": 3}}
                result = http.post(
                    f"{url}/api/v1/invoke", json=body, headers={"X-API-Key": key}
                ).json()
                assert result["result"]["structuredContent"] == {"sum": 5}
            http.close()
            proc.send_signal(signum)
            assert proc.wait(timeout=WAIT) == 0
            out, err = proc.communicate(timeout=WAIT)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(WAIT)
    assert out == "" and err == ""


class _LineWatcher(io.StringIO):
    """A stdout stand-in that signals when the first line is written."""

    def __init__(self) -> None:
        super().__init__()
        self.line_written = threading.Event()

    def write(self, text: str) -> int:
        written = super().write(text)
        if "\n" in self.getvalue():
            self.line_written.set()
        return written


def test_main_serve_in_process_with_builtin_demo_tools(monkeypatch: pytest.MonkeyPatch) -> None:
    watcher = _LineWatcher()
    monkeypatch.setattr(sys, "stdout", watcher)
    seen: dict[str, Any] = {}
    previous = signal.getsignal(signal.SIGTERM)

    def drive() -> None:
        if not watcher.line_written.wait(WAIT):
            return
        url = watcher.getvalue().strip()
        with requests.Session() as session:
            seen["health"] = session.get(f"{url}/health").json()
            body = {"server": "demo", "tool": "echo", "parameters": {"text": "hi"}}
            seen["echo"] = session.post(
                f"{url}/api/v1/invoke", json=body, headers={"X-API-Key": "k"}
            ).json()
            seen["no_key"] = session.get(f"{url}/api/v1/servers").status_code
        os.kill(os.getpid(), signal.SIGTERM)

    driver = threading.Thread(target=drive)
    driver.start()
    try:
        assert cli.main(["serve", "--api-key", "k"]) == 0
    finally:
        driver.join(WAIT)
    assert seen["health"]["servers"] == 1
    assert seen["echo"]["result"] == {"content": [{"type": "text", "text": "hi"}], "isError": False}
    assert seen["no_key"] == 401
    assert signal.getsignal(signal.SIGTERM) is previous
    assert gateway_threads() == []


@pytest.mark.parametrize(
    "config",
    [
        "not json",
        "[]",
        '{"unknown": 1}',
        '{"api_keys": "k"}',
        '{"api_keys": [1]}',
        '{"port": "80"}',
        '{"host": "0.0.0.0"}',
        '{"servers": [{"name": "bad name"}]}',
        '{"servers": [{"name": "s", "tools": ["rm-rf"]}]}',
        '{"servers": [{"sensitivity_level": "low"}]}',
        '{"event_buffer": 9999}',
        '{"event_buffer": true}',
        '{"first_event_id": 0}',
        '{"ping_interval": "15"}',
        '{"ping_interval": 0}',
        '{"event_retry": -1}',
        '{"event_framing": "gzip"}',
    ],
)
def test_serve_with_a_bad_config_exits_2_with_a_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], config: str
) -> None:
    path = tmp_path / "c.json"
    path.write_text(config)
    assert cli.main(["serve", "--config", str(path)]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.startswith("sark-sync serve: error: ")


def test_cli_without_a_subcommand_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        cli.main([])
    assert info.value.code == 2
    assert "the following arguments are required: COMMAND" in capsys.readouterr().err


def serve_in_process(
    monkeypatch: pytest.MonkeyPatch, argv: list[str], drive: Callable[[str], None]
) -> None:
    """Run ``cli.main(argv)`` here, call ``drive(url)`` from a thread once it serves, then
    stop it with SIGTERM; fail unless it exits 0."""
    watcher = _LineWatcher()
    monkeypatch.setattr(sys, "stdout", watcher)
    failures: list[BaseException] = []

    def run() -> None:
        if not watcher.line_written.wait(WAIT):
            return
        try:
            drive(watcher.getvalue().strip())
        except BaseException as exc:  # reported by the test thread
            failures.append(exc)
        finally:
            os.kill(os.getpid(), signal.SIGTERM)

    driver = threading.Thread(target=run)
    driver.start()
    try:
        assert cli.main(["serve", *argv]) == 0
    finally:
        driver.join(WAIT)
    if failures:
        raise failures[0]


def test_serve_event_options_shape_the_event_stream(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    config = tmp_path / "gateway.json"
    config.write_text(json.dumps({"event_retry": 0.5, "first_event_id": 3, "ping_interval": 60}))
    seen: dict[str, Any] = {}

    def drive(url: str) -> None:
        with EventReader(url, key="k", last_event_id=99) as reader:  # from the first event
            event = reader.next()
            seen.update(event=event, headers=reader.headers, retry=reader.retry)
            reader.quiet(0.35)
            seen["pings"] = len(reader.pings)

    argv = ["--api-key", "k", "--config", str(config), "--first-event-id", "100",
            "--ping-interval", "0.1", "--event-framing", "close", "--event-buffer", "20000"]
    serve_in_process(monkeypatch, argv, drive)
    assert seen["event"] == SSE(100, "server_registered", '{"server":"demo"}')
    assert seen["retry"] == [500]  # from the config; the options win where both are given
    assert seen["headers"]["connection"] == "close"
    assert "transfer-encoding" not in seen["headers"]
    assert 2 <= seen["pings"] <= 4


@pytest.mark.parametrize(
    "argv",
    [
        ["--event-buffer", "100"],
        ["--first-event-id", "0"],
        ["--ping-interval", "0"],
        ["--ping-interval", "-1"],
    ],
)
def test_serve_with_bad_event_options_exits_2_with_a_message(
    capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    assert cli.main(["serve", *argv]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.startswith("sark-sync serve: error: ")


@pytest.mark.parametrize("argv", [["--event-framing", "gzip"], ["--event-buffer", "many"]])
def test_serve_event_options_of_the_wrong_kind_are_usage_errors(
    capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        cli.main(["serve", *argv])
    assert info.value.code == 2
    assert "invalid" in capsys.readouterr().err


def test_serve_help_documents_the_event_options(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.main(["serve", "--help"])
    out = capsys.readouterr().out
    for option in ("--event-buffer", "--first-event-id", "--ping-interval", "--event-framing"):
        assert option in out


def test_serve_demo_serves_the_demo_catalogue_and_prints_the_variables_for_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    seen: dict[str, Any] = {}

    def drive(url: str) -> None:
        exports = dict(line.split(" ", 1)[1].split("   #")[0].split("=", 1)
                       for line in sys.stderr.getvalue().splitlines()  # type: ignore[attr-defined]
                       if line.startswith("export "))
        seen["exports"] = exports
        with requests.Session() as session:
            session.trust_env = False
            headers = {"X-API-Key": exports["SARK_API_KEY"]}
            seen["servers"] = [s["server_name"] for s in session.get(
                f"{url}/api/v1/servers", headers=headers).json()["servers"]]
            body = {"server": "payroll", "tool": "salary_report", "parameters": {"dept": "x"}}
            seen["statuses"] = [session.post(
                f"{url}/api/v1/invoke", json=body,
                headers={**headers, "Authorization": f"Bearer {exports[name]}"}).status_code
                for name in ("SARK_USER_TOKEN", "VIEWER_TOKEN")]

    monkeypatch.setattr(sys, "stderr", io.StringIO())
    serve_in_process(monkeypatch, ["--demo"], drive)
    assert seen["exports"]["SARK_GATEWAY_URL"].startswith("http://127.0.0.1:")
    assert seen["servers"] == ["demo", "tickets", "payroll"]
    assert seen["statuses"] == [200, 403]  # alice clears payroll, bob (a viewer) does not


@pytest.mark.parametrize("argv", [["--demo", "--policy", "builtin"],
                                  ["--demo", "--config", "x.json"],
                                  ["--demo", "--api-key", "k"]])
def test_serve_demo_takes_no_other_option_but_port(
    capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    assert cli.main(["serve", *argv]) == 2
    assert capsys.readouterr().err.startswith("sark-sync serve: error: --demo takes no ")
