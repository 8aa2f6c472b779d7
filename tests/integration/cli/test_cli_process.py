"""``sark-sync`` as a real child process (``python -m sark_sync.cli``): JSON output parsed
from its pipe, and Ctrl-C (SIGINT) ending ``events`` with 0 and a call in flight with 130,
cleanly, without a traceback."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from local_gateway_helpers import WAIT
from support import read_line, wait_for

from sark_sync.cli import _main as cli
from sark_sync.cli._demo_gateway import API_KEY, DemoUsers, build_gateway, issue_users
from sark_sync.testing import LocalGateway


def child_env(gateway: LocalGateway, users: DemoUsers) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SARK_")}
    env.update(PYTHONPATH=str(Path(cli.__file__).resolve().parents[2]),
               SARK_GATEWAY_URL=gateway.url, SARK_API_KEY=API_KEY,
               SARK_USER_TOKEN=users.alice)
    return env


def sark_sync(*argv: str) -> list[str]:
    return [sys.executable, "-m", "sark_sync.cli", *argv]


def test_json_output_of_a_child_process_parses(
    demo_gateway: LocalGateway, users: DemoUsers
) -> None:
    env = child_env(demo_gateway, users)
    done = subprocess.run(sark_sync("--json", "servers"), env=env, capture_output=True,
                          text=True, timeout=WAIT, check=False)
    assert (done.returncode, done.stderr) == (0, "")
    assert [s["server_name"] for s in json.loads(done.stdout)] == ["demo", "tickets", "payroll"]
    done = subprocess.run(sark_sync("invoke", "demo", "add", "a=1", "b=2", "--json"), env=env,
                          capture_output=True, text=True, timeout=WAIT, check=False)
    assert json.loads(done.stdout)["structured"] == {"sum": 3}


def test_a_denied_call_in_a_child_exits_4_with_one_line_and_no_traceback(
    demo_gateway: LocalGateway, users: DemoUsers
) -> None:
    done = subprocess.run(
        sark_sync("invoke", "payroll", "salary_report", "dept=x"),
        env={**child_env(demo_gateway, users), "SARK_USER_TOKEN": users.bob},
        capture_output=True, text=True, timeout=WAIT, check=False)
    assert (done.returncode, done.stdout) == (4, "")
    assert done.stderr.startswith("sark-sync: error: AuthorizationDenied: ")
    assert done.stderr.count("\n") == 1 and users.bob not in done.stderr


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_events_streams_until_ctrl_c_then_exits_0_without_a_traceback(
    demo_gateway: LocalGateway, users: DemoUsers, signum: int
) -> None:
    with subprocess.Popen(sark_sync("--json", "events", "--types", "tool_invoked"),
                          env=child_env(demo_gateway, users), stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True) as proc:
        try:
            # The stream connects before the first event: keep calling until one arrives.
            seen: list[str] = []

            def one_event() -> bool:
                subprocess.run(sark_sync("invoke", "demo", "echo", "text=ping"), check=True,
                               env=child_env(demo_gateway, users), capture_output=True,
                               timeout=WAIT)
                return bool(seen)

            reader = threading.Thread(target=lambda: seen.append(read_line(proc.stdout)))
            reader.start()
            wait_for(one_event, WAIT)
            reader.join(WAIT)
            event = json.loads(seen[0])
            assert event["type"] == "tool_invoked" and event["data"]["tool"] == "echo"
            proc.send_signal(signum)
            assert proc.wait(timeout=WAIT) == 0
            err = proc.communicate(timeout=WAIT)[1]
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(WAIT)
    assert "Traceback" not in err and err == ""


@pytest.mark.parametrize(("options", "expected"), [
    ((), "sark-sync: interrupted\n"),
    (("--json",), '{"error": {"type": "Interrupted", "message": "interrupted", '
                  '"exit_code": 130}}\n'),
])
def test_ctrl_c_during_a_call_exits_130_without_a_traceback(
    options: tuple[str, ...], expected: str
) -> None:
    with build_gateway() as gateway, subprocess.Popen(
        sark_sync(*options, "invoke", "demo", "slow", "seconds=5"),
        env=child_env(gateway, issue_users(gateway)), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    ) as proc:  # a gateway of its own: stopping it ends the slow call it is running
        try:
            wait_for(lambda: gateway.tool_runs("demo", "slow") > 0, WAIT)
            proc.send_signal(signal.SIGINT)
            assert proc.wait(timeout=WAIT) == 130
            out, err = proc.communicate(timeout=WAIT)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(WAIT)
    assert (out, err) == ("", expected)
