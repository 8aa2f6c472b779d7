"""The log messages of an MCP server (``notifications/message``) and ``set_logging_level``,
over an in-memory channel: levels, the Python logger, ``on_log`` on the callbacks thread, and
a hostile server (huge or deeply nested data, unknown levels, control characters) and hostile
callbacks (one that raises, one that blocks)."""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Mapping
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from support import wait_for

from sark_sync import CapabilityNotSupported, ValidationError
from sark_sync.transports._mcp_callbacks import CallbackRunner
from sark_sync.transports._mcp_client import McpSession
from sark_sync.transports._mcp_logging import (
    LOG_LEVELS,
    MAX_RENDER_CHARS,
    LogMessage,
    LogRouter,
    logger_name,
    render,
)
from sark_sync.transports._mcp_modern import LOG_LEVEL_KEY, ParamHeaders, prepare
from sark_sync.wire import jsonrpc

INIT = {"protocolVersion": "2025-11-25", "serverInfo": {"name": "fake"},
        "capabilities": {"tools": {}, "logging": {}}}


class Channel:
    """Answers every request with ``answers.get(method, {})`` and records what was sent."""

    def __init__(self, answers: Mapping[str, Any] | None = None) -> None:
        self.answers = dict(answers or {})
        self.sent: list[tuple[str, Any]] = []
        self.alive = True

    def start(self) -> None:
        pass

    def request(self, method: str, params: Mapping[str, Any] | None, timeout: float) -> Any:
        self.sent.append((method, params))
        return self.answers.get(method, INIT if method == "initialize" else {})

    def notify(self, method: str, params: Mapping[str, Any] | None = None,
               timeout: float = 1.0) -> None:
        self.sent.append((method, params))

    def respond(self, request_id: str | int, result: Any) -> None:
        pass

    def respond_error(self, request_id: str | int | None, code: int, message: str) -> None:
        pass

    def close(self) -> None:
        self.alive = False


class Session(McpSession):
    kind = "test server"

    def __init__(self, channel: Channel, name: str = "fake", **options: Any) -> None:
        super().__init__(name, timeout=5.0, on_notification=options.pop("on_notification", None),
                         **options)
        self._channel = channel


@pytest.fixture
def channel() -> Channel:
    return Channel()


def session_with(channel: Channel, **options: Any) -> Session:
    session = Session(channel, **options)
    session.handshake(5.0)
    return session


def log_message(session: Session, **params: Any) -> None:
    session._on_notification_message(jsonrpc.Notification("notifications/message", params))


# -- set_logging_level -------------------------------------------------------------------------


@pytest.mark.parametrize("level", LOG_LEVELS)
def test_set_logging_level_sends_logging_set_level(channel: Channel, level: str) -> None:
    session = session_with(channel)
    session.set_logging_level(level)
    assert channel.sent[-1] == ("logging/setLevel", {"level": level})


@pytest.mark.parametrize("level", ["verbose", "WARNING", "", 3, None, "warning\n"])
def test_set_logging_level_refuses_other_levels_before_sending(channel: Channel,
                                                                level: Any) -> None:
    session = session_with(channel)
    sent = list(channel.sent)
    with pytest.raises(ValidationError, match="level must be one of debug, info"):
        session.set_logging_level(level)
    assert channel.sent == sent


def test_set_logging_level_needs_the_logging_capability() -> None:
    channel = Channel({"initialize": dict(INIT, capabilities={"tools": {}})})
    session = session_with(channel)
    sent = list(channel.sent)
    with pytest.raises(CapabilityNotSupported) as caught:
        session.set_logging_level("info")
    assert (caught.value.capability, caught.value.method, caught.value.server) == (
        "logging", "logging/setLevel", "fake")
    assert channel.sent == sent


def test_at_2026_the_level_rides_every_request_envelope(channel: Channel) -> None:
    session = session_with(channel)
    tools = ParamHeaders()
    channel.modern_version = "2026-07-28"  # type: ignore[attr-defined]
    channel._tools = tools  # type: ignore[attr-defined]
    sent = list(channel.sent)
    session.set_logging_level("notice")
    assert channel.sent == sent  # no logging/setLevel at 2026-07-28
    body, _ = prepare("tools/call", {"name": "x", "_meta": {"progressToken": 1}},
                      "2026-07-28", tools)
    assert body is not None
    assert body["_meta"][LOG_LEVEL_KEY] == "notice"
    assert body["_meta"]["progressToken"] == 1


def test_without_a_level_the_2026_envelope_asks_for_no_logs() -> None:
    body, _ = prepare("tools/list", None, "2026-07-28", ParamHeaders())
    assert body is not None
    assert LOG_LEVEL_KEY not in body["_meta"]


# -- where the messages go ------------------------------------------------------------------


def test_without_on_log_messages_go_to_the_servers_python_logger(
        channel: Channel, caplog: pytest.LogCaptureFixture) -> None:
    session = session_with(channel, name="files.v2")
    caplog.set_level(logging.DEBUG, logger="sark_sync.mcp")
    for level in LOG_LEVELS:
        log_message(session, level=level, logger="db", data={"row": 1})
    records = [r for r in caplog.records if r.name == "sark_sync.mcp.files_v2"]
    assert [(r.levelno, r.getMessage()) for r in records] == [
        (logging.DEBUG, '[db] {"row": 1}'), (logging.INFO, '[db] {"row": 1}'),
        (logging.INFO, '[db] {"row": 1}'), (logging.WARNING, '[db] {"row": 1}'),
        (logging.ERROR, '[db] {"row": 1}'), (logging.CRITICAL, '[db] {"row": 1}'),
        (logging.CRITICAL, '[db] {"row": 1}'), (logging.CRITICAL, '[db] {"row": 1}')]
    assert records[0].mcp_server == "files.v2"  # type: ignore[attr-defined]
    assert records[2].mcp_level == "notice"  # type: ignore[attr-defined]
    assert not session._callbacks.running  # no thread for Python logging
    session._stop_callbacks()


def test_on_log_gets_each_message_on_the_callbacks_thread(channel: Channel) -> None:
    got: list[tuple[LogMessage, str]] = []
    session = session_with(channel, on_log=lambda m: got.append(
        (m, threading.current_thread().name)))
    log_message(session, level="error", logger="db", data="disk full")
    log_message(session, level="info", data=[1, 2])
    wait_for(lambda: len(got) == 2, 5.0)
    assert [m for m, _ in got] == [
        LogMessage(level="error", logger="db", data="disk full", server="fake"),
        LogMessage(level="info", logger=None, data=[1, 2], server="fake")]
    assert {name for _, name in got} == {"sark-sync-mcp-fake-callbacks"}
    session._stop_callbacks()
    assert not session._callbacks.running


def test_on_log_must_be_callable(channel: Channel) -> None:
    with pytest.raises(ValidationError, match="on_log must be a callable"):
        Session(channel, on_log="print")


def test_log_messages_still_reach_on_notification(channel: Channel) -> None:
    seen: list[str] = []
    session = session_with(channel, on_notification=lambda method, params: seen.append(method))
    log_message(session, level="info", data="x")
    assert seen == ["notifications/message"]


def test_log_message_is_frozen_and_its_repr_leaves_the_data_out() -> None:
    message = LogMessage(level="info", logger=None, data={"password": "hunter2"}, server="s")
    with pytest.raises(dataclasses.FrozenInstanceError):
        message.level = "error"  # type: ignore[misc]
    assert "hunter2" not in repr(message)
    assert message.text == '{"password": [secure]}'


# -- a hostile server ---------------------------------------------------------------------------


def test_a_huge_message_is_rendered_within_the_bound() -> None:
    text = render("x" * 5_000_000)
    assert len(text) == MAX_RENDER_CHARS and text.endswith("…")
    many = render(list(range(2_000_000)))
    assert len(many) == MAX_RENDER_CHARS and many.startswith("[0, 1, 2")
    wide = render({f"k{i}": "v" * 100 for i in range(100_000)})
    assert len(wide) == MAX_RENDER_CHARS


def test_deep_nesting_is_cut_not_recursed() -> None:
    deep: Any = "bottom"
    for _ in range(100_000):
        deep = [deep]
    text = render(deep)
    assert text.startswith("[[[[") and "…" in text and "bottom" not in text
    assert len(text) < 100


@pytest.mark.parametrize(("data", "expected"), [
    ("line one\nforged line\x1b[31m", "line one\\nforged line\\x1b[31m"),
    ({"a": "x\ny"}, '{"a": "x\\ny"}'),
    ({"api_key": "k", "nested": {"Authorization": "Bearer t"}},
     '{"api_key": [secure], "nested": {"Authorization": [secure]}}'),
    ([float("nan"), float("inf"), 1.5, None, True], "[null, null, 1.5, null, true]"),
    ({"q": 'say "hi"'}, '{"q": "say \\"hi\\""}'),
    (object(), "<object>"),
    ([10 ** 5000, -(2 ** 300), 12], "[<a large integer>, <a large integer>, 12]"),
])
def test_render_escapes_hides_secrets_and_stays_json_like(data: Any, expected: str) -> None:
    assert render(data) == expected


def test_an_unknown_level_is_kept_short_and_logged_as_warning(
        channel: Channel, caplog: pytest.LogCaptureFixture) -> None:
    got: list[LogMessage] = []
    session = session_with(channel, on_log=got.append)
    log_message(session, level="chatty\n" + "x" * 1000, data="hi")
    wait_for(lambda: got, 5.0)
    assert got[0].level == "chatty\\n" + "x" * 121
    assert got[0].python_level == logging.WARNING
    session._stop_callbacks()


@pytest.mark.parametrize("params", [{"data": "no level"}, {"level": 7, "data": "x"},
                                    {"level": None}])
def test_a_message_without_a_level_string_is_skipped_with_a_warning(
        channel: Channel, caplog: pytest.LogCaptureFixture, params: dict[str, Any]) -> None:
    got: list[LogMessage] = []
    session = session_with(channel, on_log=got.append)
    log_message(session, **params)
    assert "without a level string: skipped" in caplog.text
    assert not got and not session._callbacks.running


def test_a_logger_name_with_control_characters_is_escaped(
        channel: Channel, caplog: pytest.LogCaptureFixture) -> None:
    session = session_with(channel)
    caplog.set_level(logging.INFO, logger="sark_sync.mcp")
    log_message(session, level="info", logger="a\r\nb", data="x")
    assert [r.getMessage() for r in caplog.records if r.name == "sark_sync.mcp.fake"] == [
        "[a\\r\\nb] x"]


@pytest.mark.parametrize(("server", "expected"), [
    ("files", "sark_sync.mcp.files"), ("a.b c/d", "sark_sync.mcp.a_b_c_d"),
    ("", "sark_sync.mcp.server"), ("é" * 100, "sark_sync.mcp." + "_" * 64),
])
def test_logger_names_are_safe(server: str, expected: str) -> None:
    assert logger_name(server) == expected


# -- hostile callbacks --------------------------------------------------------------------------


def test_a_callback_that_raises_is_logged_and_the_next_messages_still_arrive(
        channel: Channel, caplog: pytest.LogCaptureFixture) -> None:
    got: list[str] = []

    def on_log(message: LogMessage) -> None:
        if message.data == "boom":
            raise RuntimeError("secret detail")
        got.append(message.data)

    session = session_with(channel, on_log=on_log)
    for data in ("a", "boom", "b"):
        log_message(session, level="info", data=data)
    wait_for(lambda: got == ["a", "b"], 5.0)
    assert "a callback raised RuntimeError" in caplog.text
    assert "secret detail" not in "".join(r.getMessage() for r in caplog.records
                                          if r.levelno >= logging.WARNING)
    session._stop_callbacks()


def test_a_blocked_callback_never_blocks_the_reader_and_overflow_is_dropped(
        caplog: pytest.LogCaptureFixture) -> None:
    release = threading.Event()
    started = threading.Event()
    got: list[Any] = []

    def on_log(message: LogMessage) -> None:
        started.set()
        release.wait(10)
        got.append(message.data)

    runner = CallbackRunner("slow", limit=3)
    router = LogRouter("slow", on_log, runner)
    router.handle({"level": "info", "data": 0})
    assert started.wait(5)
    begun = time.monotonic()
    for i in range(1, 11):
        router.handle({"level": "info", "data": i})
    assert time.monotonic() - begun < 1.0  # the reader went on at once
    assert runner.dropped == 7
    assert "a callback is too slow" in caplog.text
    release.set()
    wait_for(lambda: got == [0, 1, 2, 3], 5.0)
    runner.close()


def test_close_joins_the_thread_and_abandons_a_callback_blocked_past_the_bound(
        caplog: pytest.LogCaptureFixture) -> None:
    release = threading.Event()
    started = threading.Event()
    runner = CallbackRunner("stuck")
    def stuck() -> None:
        started.set()
        release.wait(10)

    runner.submit(stuck)
    runner.submit(lambda: pytest.fail("queued after close: must not run"))
    assert started.wait(5)
    begun = time.monotonic()
    runner.close(timeout=0.2)
    assert time.monotonic() - begun < 2.0
    assert "a callback still runs" in caplog.text
    assert runner.submit(print) is False and runner.dropped == 1
    release.set()
    wait_for(lambda: not any(t.name == "sark-sync-mcp-stuck-callbacks"
                             for t in threading.enumerate()), 5.0)


def test_after_fork_the_child_forgets_the_thread_and_starts_its_own() -> None:
    runner = CallbackRunner("forked")
    done = threading.Event()
    runner.submit(done.set)
    assert done.wait(5)
    parent_thread, parent_pending = runner._thread, runner._pending
    runner._after_fork_in_child()  # what os.fork's hook runs in the child
    assert runner._thread is None and not runner.running
    again = threading.Event()
    assert runner.submit(again.set)
    assert again.wait(5) and runner._thread is not parent_thread
    runner.close()
    parent_pending.stop()  # here the "parent's" thread is in this process: end it
    assert parent_thread is not None
    parent_thread.join(5)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: st.lists(inner, max_size=8) | st.dictionaries(st.text(), inner, max_size=8),
    max_leaves=200)


@given(data=JSON, limit=st.integers(min_value=1, max_value=300))
def test_render_of_any_json_value_is_bounded_and_one_line(data: Any, limit: int) -> None:
    text = render(data, limit)
    assert len(text) <= limit
    assert not any(ch in text for ch in "\n\r\x1b\x00\u2028")


@given(params=st.dictionaries(st.sampled_from(["level", "logger", "data", "x"]), JSON))
def test_any_log_message_params_are_routed_without_raising(params: dict[str, Any]) -> None:
    router = LogRouter("fuzz", None, CallbackRunner("fuzz"))
    router.handle(params)
