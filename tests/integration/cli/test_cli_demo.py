"""``sark-sync demo`` runs end to end, quickly, and tells a newcomer what happened."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
import time

import pytest

from sark_sync.cli._demo import run_demo
from sark_sync.cli._tour import Tour

#: The marker of each step, in the order the tour must show them.
STEP_TITLES = (
    "1. A SARK gateway on loopback, enforcing the shipped policy",
    "2. Discovery: what can this application call?",
    "3. An allowed call: invoke_tool blocks until the result",
    "4. A denied call: the policy says no, and why",
    "5. Parameter filtering: secrets never reach the tool",
    "6. Events: the gateway's own record of those calls",
    "7. A local MCP server: same client, same pipeline, no gateway",
    "8. Retries: only when repeating a call cannot repeat its side effect",
    "9. A deadline bounds every call",
    "10. A circuit breaker per server",
    "11. Parallel calls without asyncio",
)


def test_demo_walks_through_every_step_in_order() -> None:
    out = io.StringIO()
    assert run_demo(out) == 0
    text = out.getvalue()
    positions = [text.index("\n" + title) for title in STEP_TITLES]
    assert positions == sorted(positions)
    assert "demo     stdio      low          -        healthy" in text  # the hosted server
    assert "{'sum': 5}" in text and "tool error: 'disk full'" in text
    assert "AuthorizationDenied: denied: insufficient clearance: medium sensitivity" in text
    assert "the tool received: host, user   result.filtered: ['password']" in text
    assert "hunter2" not in text.replace('"password": "hunter2"', "")  # only in the code shown
    assert re.search(r"authorization_denied +payroll/salary_report +bob", text)
    assert re.search(r"tool_invoked +payroll/connect_db +alice +success", text)
    assert "{'sum': 42}" in text  # the local server
    assert "the tool ran 1 time: one ticket, not two" in text
    assert "DeadlineExceeded after 0.5" in text
    assert "CircuitOpenError: 5 consecutive failures" in text
    assert "40 results in order" in text
    assert "Traceback" not in text
    assert text.rstrip().endswith("tools, invoke, events, local.")


def test_a_steps_text_lines_up_under_its_title_past_step_9() -> None:
    out = io.StringIO()
    tour = Tour(out)
    tour.title("One")
    tour.say("under one")
    tour.step = 9
    tour.title("Ten")
    tour.say("under ten")
    tour.code("x = 1")
    assert out.getvalue() == "\n1. One\n   under one\n\n10. Ten\n    under ten\n    >>> x = 1\n"


def test_demo_command_exits_0_within_15_seconds() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SARK_")}
    started = time.monotonic()
    completed = subprocess.run(
        [sys.executable, "-m", "sark_sync.cli", "demo"],
        capture_output=True, text=True, timeout=30, env=env, check=False,
    )
    elapsed = time.monotonic() - started
    assert completed.returncode == 0, completed.stderr
    assert elapsed < 15
    assert "Done in" in completed.stdout
    assert completed.stderr == ""


def test_a_step_that_misbehaves_ends_the_demo_with_1_and_a_one_line_reason(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """bob stands in for alice: her filtering call is denied, which step 5 does not expect."""
    from sark_sync.cli import _demo
    real = _demo.issue_users
    monkeypatch.setattr(_demo, "issue_users",
                        lambda gw: _demo.DemoUsers(alice=real(gw).bob, bob=real(gw).bob))
    out = io.StringIO()
    assert run_demo(out) == 1
    last = out.getvalue().rstrip().splitlines()[-1]
    assert last.startswith("demo failed at step 5: AuthorizationDenied: ")
    assert "Traceback" not in out.getvalue()
