"""Where audit events go: the sink protocol and the local sinks (logging, JSON lines, callable).

A sink has ``emit(event)`` and ``close()``; ``flush()`` where buffering makes it meaningful.
The sinks here never raise from ``emit``: an event a sink cannot take goes to its *fallback*
(by default a :class:`LoggingSink` on ``sark_sync.audit.fallback`` at WARNING) and a counter
(``dropped_to_fallback``) says how many did, so nothing is dropped silently. Diagnostics name
the failure by exception type only: an exception's message may quote a value.

Every sink is thread-safe, and fork-safe: locks are replaced in a forked child (see
``sark_sync.resilience.forksafety``), so a lock held by a parent thread at ``fork()`` cannot
hang it.
"""

from __future__ import annotations

import errno
import logging
import os
import threading
from collections.abc import Iterable
from typing import Any, Callable, Protocol, Union

from .._exceptions import ConfigurationError
from ..resilience import forksafety
from ._audit_event import AuditEvent

__all__ = ["DEFAULT_LOGGER", "FALLBACK_LOGGER", "AuditSink", "CallableSink", "JSONLinesSink",
           "LoggingSink", "fallback_sink", "to_fallback"]

#: The logger of the default sink.
DEFAULT_LOGGER = "sark_sync.audit"
#: The logger of the fallback sink; a child of ``sark_sync.audit``, so its handlers see both.
FALLBACK_LOGGER = "sark_sync.audit.fallback"
#: Permissions of a JSON lines file the sink creates: audit trails are for their owner.
JSONL_FILE_MODE = 0o600

log = logging.getLogger("sark_sync.governance.audit")


class AuditSink(Protocol):
    """What :class:`~sark_sync.governance.audit.Auditor` needs of a sink."""

    def emit(self, event: AuditEvent) -> None: ...

    def close(self) -> None: ...


class LoggingSink:
    """Each event as one line of JSON on a logger (default ``sark_sync.audit`` at INFO).

    The record's message is :meth:`AuditEvent.to_json`; the event itself rides along as
    ``record.audit_event`` for handlers that want fields. What reaches a file or a collector is
    up to the application's logging configuration: a logger not enabled for ``level`` shows
    nothing. ``close()`` and ``flush()`` do nothing (handlers belong to the application).
    """

    def __init__(self, logger: str | logging.Logger = DEFAULT_LOGGER,
                 level: int = logging.INFO) -> None:
        self.logger = logging.getLogger(logger) if isinstance(logger, str) else logger
        self.level = level

    def emit(self, event: AuditEvent) -> None:
        if self.logger.isEnabledFor(self.level):
            self.logger.log(self.level, "%s", event.to_json(), extra={"audit_event": event})

    def flush(self) -> None:
        """Nothing to do: logging handlers flush as they are configured to."""

    def close(self) -> None:
        """Nothing to close: the logger and its handlers belong to the application."""

    def __repr__(self) -> str:
        return f"LoggingSink({self.logger.name!r}, {logging.getLevelName(self.level)})"


def fallback_sink() -> LoggingSink:
    """The default fallback: WARNING records on ``sark_sync.audit.fallback``."""
    return LoggingSink(FALLBACK_LOGGER, logging.WARNING)


def to_fallback(fallback: AuditSink, events: Iterable[AuditEvent]) -> None:
    """Hand ``events`` to ``fallback``; a fallback that fails is reported, never raised."""
    for event in events:
        try:
            fallback.emit(event)
        except Exception as exc:
            log.error("audit fallback sink %r failed with %s; event %s lost", fallback,
                      type(exc).__name__, event.event_id)


class JSONLinesSink:
    """Appends each event to a file as one line of JSON (``path`` is created with mode 0600).

    The file is opened once with ``O_APPEND``, and each line is written with one ``write()``
    under a lock: lines of threads of this process never interleave, and processes appending to
    the same local file do not cut each other's lines either (not guaranteed on NFS).

    Durability: every line is handed to the operating system before ``emit`` returns (no
    user-space buffer), so it survives a crash of the process; it survives a power loss only
    once ``flush()`` (an ``fsync``) returned, or after every line with ``fsync=True`` (slow).

    A write that fails (disk full, file system gone) sends the event to ``fallback`` and counts
    it in ``dropped_to_fallback``; so does an event emitted after ``close()``. An unopenable
    ``path`` raises :class:`~sark_sync.ConfigurationError` at construction.
    """

    def __init__(self, path: str | os.PathLike[str], *, fsync: bool = False,
                 fallback: AuditSink | None = None) -> None:
        self.path = os.fspath(path)
        self.fsync = fsync
        self.fallback: AuditSink = fallback if fallback is not None else fallback_sink()
        self.written = 0
        self.dropped_to_fallback = 0
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0)
        try:
            self._fd: int | None = os.open(self.path, flags, JSONL_FILE_MODE)
        except OSError as exc:
            raise ConfigurationError(f"cannot open the audit file {self.path!r}: "
                                     f"{type(exc).__name__} ({_errno_name(exc)})") from exc
        self._lock = threading.Lock()
        forksafety.register(self)

    def emit(self, event: AuditEvent) -> None:
        line = (event.to_json() + "\n").encode("ascii")
        with self._lock:
            failure = None
            if self._fd is None:
                failure = "the sink is closed"
            else:
                try:
                    _write_all(self._fd, line)
                    if self.fsync:
                        os.fsync(self._fd)
                    self.written += 1
                    return
                except OSError as exc:
                    failure = f"{type(exc).__name__} ({_errno_name(exc)})"
            self.dropped_to_fallback += 1
        log.warning("audit event %s not written to %s: %s; it went to the fallback sink",
                    event.event_id, self.path, failure)
        to_fallback(self.fallback, [event])

    def flush(self) -> None:
        """``fsync`` the file: every line emitted so far survives a power loss."""
        with self._lock:
            if self._fd is not None:
                try:
                    os.fsync(self._fd)
                except OSError as exc:
                    log.warning("fsync of %s failed: %s", self.path, type(exc).__name__)

    def close(self) -> None:
        """Close the file (idempotent); later events go to the fallback sink."""
        with self._lock:
            fd, self._fd = self._fd, None
        if fd is not None:
            try:
                os.close(fd)
            except OSError as exc:  # the lines were written; only the final close failed
                log.warning("closing %s failed: %s", self.path, type(exc).__name__)

    def __enter__(self) -> JSONLinesSink:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"JSONLinesSink({self.path!r})"

    def _after_fork_in_child(self) -> None:
        # The descriptor is shared with the parent, which is fine with O_APPEND; the lock may
        # have been held by a parent thread at fork time.
        self._lock = threading.Lock()


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _errno_name(exc: OSError) -> str:
    return errno.errorcode.get(exc.errno or 0, "no errno")


SinkFunction = Callable[[AuditEvent], Any]


class CallableSink:
    """Calls ``func(event)`` for each event.

    An exception from ``func`` is caught: it is logged (its type, never its message), counted
    in ``errors`` and ``dropped_to_fallback``, and the event goes to ``fallback``. ``func`` is
    called from whichever thread emits, so it must be thread-safe itself.
    """

    def __init__(self, func: SinkFunction, *, name: str | None = None,
                 fallback: AuditSink | None = None) -> None:
        if not callable(func):
            raise ConfigurationError(f"CallableSink needs a callable, not {type(func).__name__}")
        self.func = func
        self.name = name or getattr(func, "__qualname__", None) or type(func).__name__
        self.fallback: AuditSink = fallback if fallback is not None else fallback_sink()
        self.errors = 0
        self.dropped_to_fallback = 0
        self._lock = threading.Lock()
        forksafety.register(self)

    def emit(self, event: AuditEvent) -> None:
        try:
            self.func(event)
            return
        except Exception as exc:
            failure = type(exc).__name__
        with self._lock:
            self.errors += 1
            self.dropped_to_fallback += 1
        log.warning("audit sink %s failed with %s; event %s went to the fallback sink",
                    self.name, failure, event.event_id)
        to_fallback(self.fallback, [event])

    def close(self) -> None:
        """Nothing to close: ``func`` belongs to the caller."""

    def __repr__(self) -> str:
        return f"CallableSink({self.name})"

    def _after_fork_in_child(self) -> None:
        self._lock = threading.Lock()


#: What ``Auditor`` accepts as a sink: a sink object or a plain callable.
SinkLike = Union[AuditSink, SinkFunction]
