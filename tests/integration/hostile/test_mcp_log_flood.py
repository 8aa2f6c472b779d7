"""A local MCP server whose log messages attack the client (``stdio_servers/log_flood.py``): a
4 MiB message full of forged lines and escape sequences, data nested 500 deep, levels that are
unknown or not strings, and thousands of messages at once against a callback that blocks."""

from __future__ import annotations

import logging
import sys
import threading
from pathlib import Path

import pytest
from support import child_env, wait_for

from sark_sync.transports import LocalServer, LogMessage
from sark_sync.transports._mcp_logging import MAX_RENDER_CHARS

FLOOD = [sys.executable, str(Path(__file__).resolve().parents[1] / "stdio_servers" /
                             "log_flood.py")]
#: What one flood submits to the callbacks thread: 2,000 + 3 log messages that parse (the
#: huge one, the deep one, the unknown level) + the last one, and 20 resource updates.
SUBMITTED = 2004 + 20


def test_a_blocked_on_log_never_stalls_the_call_and_the_overflow_is_counted() -> None:
    release = threading.Event()
    got: list[LogMessage] = []
    updates: list[str] = []

    def on_log(message: LogMessage) -> None:
        release.wait(10)
        got.append(message)

    with LocalServer(FLOOD, env=child_env(), name="flood", on_log=on_log) as server:
        server.subscribe_resource("flood://counter", updates.append)
        assert server.call_tool("flood", {}, timeout=10).text == "flooded"
        dropped = server._callbacks.dropped
        assert dropped > 0  # the queue filled while on_log was blocked: not the reader
        release.set()
        wait_for(lambda: len(got) + len(updates) + server._callbacks.dropped == SUBMITTED)
    assert got[0].level == "error" and len(got[0].text) == MAX_RENDER_CHARS
    assert "\n" not in got[0].text and "\x1b" not in got[0].text
    assert got[1].level == "warning" and got[1].text.startswith("[[[[") and "…" in got[1].text
    assert got[2].level == "chatty"
    assert all(update == "flood://counter" for update in updates)


def test_without_on_log_every_record_is_one_bounded_line(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="sark_sync.mcp")
    with LocalServer(FLOOD, env=child_env(), name="flood") as server:
        assert server.call_tool("flood", {"count": 50}, timeout=10).text == "flooded"
    records = [r for r in caplog.records if r.name == "sark_sync.mcp.flood"]
    assert len(records) == 3 + 50 + 1
    assert all(len(r.getMessage()) <= len("[flood] ") + MAX_RENDER_CHARS for r in records)
    assert not any("\n" in r.getMessage() or "\x1b" in r.getMessage() for r in records)
    assert [r.levelno for r in records[:3]] == [logging.ERROR, logging.WARNING, logging.WARNING]
    assert records[-1].levelno == logging.CRITICAL and records[-1].getMessage() == "last"
    assert caplog.text.count("without a level string: skipped") == 2
