"""The local audit sinks and the Auditor: logging, JSON lines, callables, fan-out, failures."""

from __future__ import annotations

import errno
import json
import logging
import os
import stat
import threading
from pathlib import Path
from typing import Any

import pytest

import sark_sync
from sark_sync.governance import _audit_sinks
from sark_sync.governance.audit import (
    AuditEvent,
    Auditor,
    CallableSink,
    JSONLinesSink,
    LoggingSink,
)

SECRET = "hunter2-s3cr3t"
PARAMS = {"user": "ada", "password": SECRET, "nested": [{"api_key": SECRET}]}


class ListSink:
    """A sink that keeps what it gets."""

    def __init__(self) -> None:
        self.events: list[AuditEvent] = []
        self.closed = 0

    def emit(self, event: AuditEvent) -> None:
        self.events.append(event)

    def close(self) -> None:
        self.closed += 1


class FailingSink:
    def __init__(self, error: Exception | None = None) -> None:
        self.error = error or RuntimeError(f"cannot store {SECRET}")
        self.closed = 0

    def emit(self, event: AuditEvent) -> None:
        raise self.error

    def close(self) -> None:
        self.closed += 1
        raise OSError(f"close failed {SECRET}")


def event(**fields: Any) -> AuditEvent:
    fields.setdefault("server", "demo")
    fields.setdefault("tool", "echo")
    fields.setdefault("outcome", "success")
    fields.setdefault("parameters", PARAMS)
    return AuditEvent(**fields)


# -- LoggingSink -------------------------------------------------------------------------------


def test_logging_sink_writes_one_json_line_per_event_on_sark_sync_audit_at_info(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="sark_sync.audit")
    first, second = event(), event(outcome="error", error_type="ValueError")
    sink = LoggingSink()
    sink.emit(first)
    sink.emit(second)
    records = [r for r in caplog.records if r.name == "sark_sync.audit"]
    assert [r.levelno for r in records] == [logging.INFO, logging.INFO]
    assert [r.getMessage() for r in records] == [first.to_json(), second.to_json()]
    assert records[0].audit_event is first  # type: ignore[attr-defined]
    assert SECRET not in caplog.text


def test_logging_sink_takes_a_logger_and_a_level(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="app.audit")
    LoggingSink(logging.getLogger("app.audit"), logging.WARNING).emit(event())
    assert [(r.name, r.levelno) for r in caplog.records] == [("app.audit", logging.WARNING)]


def test_logging_sink_does_not_build_the_line_when_its_logger_is_disabled(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    logger = logging.getLogger("sark_sync.audit.test_disabled")
    logger.setLevel(logging.ERROR)
    built: list[AuditEvent] = []
    monkeypatch.setattr(AuditEvent, "to_json", lambda self: built.append(self) or "")
    LoggingSink(logger).emit(event())
    logger.setLevel(logging.NOTSET)
    assert built == []


# -- JSONLinesSink -----------------------------------------------------------------------------


def test_jsonl_sink_appends_one_valid_line_per_event_to_a_private_file(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    first, second = event(), event(tool="other")
    with JSONLinesSink(path) as sink:
        sink.emit(first)
    with JSONLinesSink(str(path)) as sink:  # a second sink appends
        sink.emit(second)
    lines = path.read_bytes().split(b"\n")
    assert lines[-1] == b""
    assert [json.loads(line) for line in lines[:-1]] == [first.to_dict(), second.to_dict()]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert SECRET not in path.read_text()
    assert sink.written == 1 and sink.dropped_to_fallback == 0


@pytest.mark.stress
def test_jsonl_sink_16_threads_x_500_events_give_8000_whole_lines(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    sink = JSONLinesSink(path)
    start = threading.Barrier(16)

    def work(worker: int) -> None:
        start.wait()
        for n in range(500):
            sink.emit(event(request_id=f"{worker}-{n}", reason="x" * (n % 50)))

    threads = [threading.Thread(target=work, args=(w,)) for w in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    sink.close()
    lines = path.read_text().splitlines()
    assert len(lines) == 8000
    decoded = [json.loads(line) for line in lines]  # every line whole: none interleaved
    assert sink.written == 8000
    assert len({d["event_id"] for d in decoded}) == 8000
    for worker in range(16):  # and each thread's events in the order it emitted them
        mine = [d["request_id"] for d in decoded if d["request_id"].startswith(f"{worker}-")]
        assert mine == [f"{worker}-{n}" for n in range(500)]


def test_jsonl_sink_completes_a_partial_write(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    real_write = os.write
    monkeypatch.setattr(os, "write", lambda fd, data: real_write(fd, bytes(data[:7])))
    path = tmp_path / "audit.jsonl"
    with JSONLinesSink(path) as sink:
        sink.emit(first := event())
    monkeypatch.undo()
    assert json.loads(path.read_text()) == first.to_dict()


def test_jsonl_sink_sends_an_event_it_cannot_write_to_the_fallback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    fallback = ListSink()
    sink = JSONLinesSink(tmp_path / "audit.jsonl", fallback=fallback)

    def disk_full(fd: int, data: bytes) -> int:
        raise OSError(errno.ENOSPC, f"No space left ({SECRET})")

    monkeypatch.setattr(os, "write", disk_full)
    lost = event()
    sink.emit(lost)
    monkeypatch.undo()
    sink.close()
    assert fallback.events == [lost]
    assert (sink.written, sink.dropped_to_fallback) == (0, 1)
    assert "OSError (ENOSPC)" in caplog.text and SECRET not in caplog.text


def test_jsonl_sink_after_close_sends_events_to_the_fallback(tmp_path: Path) -> None:
    fallback = ListSink()
    sink = JSONLinesSink(tmp_path / "audit.jsonl", fallback=fallback)
    sink.close()
    sink.close()  # idempotent
    late = event()
    sink.emit(late)
    assert fallback.events == [late] and sink.dropped_to_fallback == 1


def test_jsonl_sink_default_fallback_logs_the_event_at_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    sink = JSONLinesSink(tmp_path / "audit.jsonl")
    sink.close()
    late = event()
    sink.emit(late)
    records = [r for r in caplog.records if r.name == "sark_sync.audit.fallback"]
    assert [(r.levelno, r.getMessage()) for r in records] == [(logging.WARNING, late.to_json())]


def test_jsonl_sink_flush_and_fsync_mode_call_fsync(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[int] = []
    monkeypatch.setattr(os, "fsync", synced.append)
    with JSONLinesSink(tmp_path / "a.jsonl") as plain:
        plain.emit(event())
        assert synced == []
        plain.flush()
        assert len(synced) == 1
    with JSONLinesSink(tmp_path / "b.jsonl", fsync=True) as durable:
        durable.emit(event())
        durable.emit(event())
    assert len(synced) == 3


def test_jsonl_sink_refuses_a_path_it_cannot_open(tmp_path: Path) -> None:
    with pytest.raises(sark_sync.ConfigurationError, match=r"cannot open the audit file .*ENOENT"):
        JSONLinesSink(tmp_path / "missing" / "audit.jsonl")


def test_jsonl_sink_closes_its_file(tmp_path: Path) -> None:
    before = set(os.listdir("/proc/self/fd"))
    sink = JSONLinesSink(tmp_path / "audit.jsonl")
    sink.close()
    assert set(os.listdir("/proc/self/fd")) <= before


def test_jsonl_sink_replaces_its_lock_in_a_forked_child(tmp_path: Path) -> None:
    with JSONLinesSink(tmp_path / "audit.jsonl") as sink:
        sink._lock.acquire()  # held by a "parent thread" at fork time
        sink._after_fork_in_child()
        sink.emit(event())
        assert sink.written == 1


# -- CallableSink ------------------------------------------------------------------------------


def test_callable_sink_calls_the_function_with_the_event() -> None:
    got: list[AuditEvent] = []
    sink = CallableSink(got.append)
    one = event()
    sink.emit(one)
    assert got == [one] and sink.errors == 0


def test_callable_sink_catches_counts_and_logs_by_type_only(
    caplog: pytest.LogCaptureFixture,
) -> None:
    fallback = ListSink()

    def broken(event: AuditEvent) -> None:
        raise ValueError(f"bad value {SECRET}")

    sink = CallableSink(broken, fallback=fallback)
    first, second = event(), event()
    sink.emit(first)
    sink.emit(second)
    assert (sink.errors, sink.dropped_to_fallback) == (2, 2)
    assert fallback.events == [first, second]
    assert "audit sink test_callable_sink_catches_counts_and_logs_by_type_only.<locals>.broken " \
           "failed with ValueError" in caplog.text
    assert SECRET not in caplog.text


def test_callable_sink_lets_keyboard_interrupt_through() -> None:
    def interrupted(event: AuditEvent) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        CallableSink(interrupted, fallback=ListSink()).emit(event())


def test_callable_sink_needs_a_callable() -> None:
    with pytest.raises(sark_sync.ConfigurationError, match="needs a callable, not int"):
        CallableSink(42)  # type: ignore[arg-type]


# -- Auditor -----------------------------------------------------------------------------------


def test_auditor_fans_each_event_out_to_every_sink_in_order() -> None:
    calls: list[str] = []
    first, second = ListSink(), ListSink()
    auditor = Auditor([first, lambda e: calls.append(e.event_id), second])
    recorded = auditor.record(server="demo", tool="echo", transport="http", parameters=PARAMS)
    assert recorded is not None
    assert first.events == [recorded] and second.events == [recorded]
    assert calls == [recorded.event_id]
    assert recorded.parameters == {"user": "ada", "password": "[secure]",
                                   "nested": [{"api_key": "[secure]"}]}
    assert auditor.emitted == 1 and auditor.sink_errors == 0


def test_auditor_defaults_to_the_logging_sink(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="sark_sync.audit")
    auditor = Auditor()
    assert [type(s) for s in auditor.sinks] == [LoggingSink]
    recorded = auditor.record(server="demo", tool="echo", parameters=PARAMS)
    assert recorded is not None
    assert [r.getMessage() for r in caplog.records if r.name == "sark_sync.audit"] == [
        recorded.to_json()]
    assert SECRET not in caplog.text
    assert Auditor([]).sinks == ()


def test_a_failing_sink_is_logged_counted_and_bypassed_through_the_fallback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    good, fallback = ListSink(), ListSink()
    auditor = Auditor([FailingSink(), good], fallback=fallback)
    recorded = auditor.record(server="demo", tool="echo", parameters=PARAMS)
    assert recorded is not None
    assert good.events == [recorded] and fallback.events == [recorded]
    assert (auditor.emitted, auditor.sink_errors, auditor.dropped_to_fallback) == (1, 1, 1)
    assert "failed with RuntimeError" in caplog.text and SECRET not in caplog.text


def test_record_with_invalid_fields_returns_none_and_never_raises(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sink = ListSink()
    auditor = Auditor([sink])
    assert auditor.record(attempts="three", parameters=PARAMS) is None  # type: ignore[arg-type]
    assert auditor.record(transport="pigeon") is None
    assert sink.events == [] and auditor.invalid_events == 2
    assert "TypeError (AuditEvent.attempts must be an int or None)" in caplog.text
    assert "pigeon" not in caplog.text


def test_record_derives_the_outcome_from_the_error() -> None:
    sink = ListSink()
    auditor = Auditor([sink])
    auditor.record(error=sark_sync.AuthorizationDenied("no", reason="role"), server="demo")
    auditor.record(error=sark_sync.TransportTimeout("slow", attempts=3))
    assert [(e.outcome, e.error_type, e.attempts) for e in sink.events] == [
        ("denied", "AuthorizationDenied", None), ("error", "TransportTimeout", 3)]


def test_auditor_close_closes_every_sink_even_when_one_fails(
    caplog: pytest.LogCaptureFixture,
) -> None:
    failing, good = FailingSink(), ListSink()
    auditor = Auditor([failing, good], fallback=ListSink())
    with auditor:
        pass
    auditor.close()  # idempotent
    assert (failing.closed, good.closed) == (1, 1)
    assert "closing audit sink" in caplog.text and SECRET not in caplog.text


def test_events_recorded_after_close_go_to_the_fallback() -> None:
    sink, fallback = ListSink(), ListSink()
    auditor = Auditor([sink], fallback=fallback)
    auditor.close()
    late = auditor.record(server="demo")
    assert sink.events == [] and fallback.events == [late]
    assert auditor.dropped_to_fallback == 1


def test_auditor_flush_flushes_the_sinks_that_can(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[int] = []
    monkeypatch.setattr(os, "fsync", synced.append)
    with Auditor([ListSink(), JSONLinesSink(tmp_path / "a.jsonl"), LoggingSink()]) as auditor:
        auditor.flush()
    assert len(synced) == 1


def test_auditor_refuses_what_is_neither_a_sink_nor_callable() -> None:
    with pytest.raises(sark_sync.ConfigurationError, match="got str"):
        Auditor(["not a sink"])  # type: ignore[list-item]


@pytest.mark.stress
def test_auditor_is_thread_safe_16_threads_x_200_records(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    kept: list[AuditEvent] = []
    lock = threading.Lock()

    def keep(event: AuditEvent) -> None:
        with lock:
            kept.append(event)

    failing = FailingSink()
    with Auditor([JSONLinesSink(path), keep, failing], fallback=ListSink()) as auditor:
        start = threading.Barrier(16)

        def work() -> None:
            start.wait()
            for _ in range(200):
                auditor.record(server="demo", parameters=PARAMS)

        threads = [threading.Thread(target=work) for _ in range(16)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert (auditor.emitted, auditor.sink_errors, auditor.dropped_to_fallback) == (3200, 3200,
                                                                                    3200)
    assert len(kept) == 3200
    assert len(path.read_text().splitlines()) == 3200


def test_a_failing_fallback_is_reported_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    auditor = Auditor([FailingSink()], fallback=FailingSink())
    recorded = auditor.record(server="demo")
    assert recorded is not None
    assert f"event {recorded.event_id} lost" in caplog.text
    assert SECRET not in caplog.text


def test_the_diagnostics_logger_is_under_sark_sync() -> None:
    assert _audit_sinks.log.name == "sark_sync.governance.audit"
