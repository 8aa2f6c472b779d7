"""Audit trail of governed operations (docs/gateway/AUDIT.md): events, sinks, the auditor.

Every operation and its outcome becomes an :class:`AuditEvent` (parameters redacted at
construction) that an :class:`Auditor` fans out to its sinks:

- :class:`LoggingSink` (the default): one JSON line per event on the ``sark_sync.audit`` logger;
- :class:`JSONLinesSink`: one JSON line per event appended to a file;
- :class:`HTTPSink`: batches posted to SARK's ``/api/v1/gateway/audit`` by a background thread,
  at least once;
- :class:`CallableSink`, or any callable: ``func(event)``.

Auditing never fails the audited call: :meth:`Auditor.record` and :meth:`Auditor.emit` never
raise, and never drop an event silently. A sink that raises is logged (by exception type) and
counted, and the event goes to the fallback sink, WARNING records on
``sark_sync.audit.fallback``; the built-in sinks send there what they cannot deliver.

**What the client records.** ``GatewayClient(audit=...)`` records one event per public
operation, whatever its outcome (``"success"``, ``"denied"``, ``"error"``, and
``"tool_error"`` for tool calls); :data:`EVENT_TYPES` lists the event types:

================== ====================================================== =========== =======
event_type         operation                                              transport   server
================== ====================================================== =========== =======
tool_invocation    ``invoke_tool`` (one per call of ``submit`` and        http, stdio yes
                   ``invoke_many`` too); with the redacted parameters
authorization      ``invoke_tool`` denied by the client's authorizer or   http, stdio yes
                   the gateway's policy; with the decision and reason
discovery          ``list_servers``, ``iter_servers``, ``get_server``,    http, stdio named
                   ``list_tools``, ``iter_tools`` (stdio for a local
                   server)
health             ``health``                                             http        no
event_stream       ``stream_events``: the stream opened (or failed to)    sse         no
================== ====================================================== =========== =======

A remote MCP server reached by URL (Streamable HTTP or HTTP+SSE) is ``transport="mcp-http"``
where the table says stdio for a local one.

Every event has ``event_id``, ``timestamp``, ``event_type``, ``operation``, ``transport``,
``outcome``, ``latency_ms`` (the time in the client; for an iterator, fetching its pages),
``principal_id`` (the explicit ``principal=``, else the ``user_token``'s ``sub`` read without
verification, else None; discovery takes no token), and, as known, ``request_id`` (the
failed request's, else the last sent), ``attempts`` (summed over an iterator's pages),
``status_code`` (the failed request's, else the last answer's; tool calls give it for errors
only) and ``error_type``. ``parameters`` are the tool call's, redacted; None for the other
operations. An iterator's event is recorded when it is exhausted, fails or is closed; one
dropped before its first item records nothing. Arguments refused before anything is sent
(``ValidationError``) are not audited. With the default :class:`LoggingSink` and its logger
not enabled for INFO, no event is built at all.

Recording one by hand::

    auditor = Auditor([LoggingSink(), HTTPSink(sark_url, api_key=key)])
    auditor.record("tool_invocation", operation="invoke_tool", principal_id=principal.id,
                   server="demo", tool="echo", transport="http", decision="allow",
                   parameters=arguments, latency_ms=elapsed_ms, request_id=request_id,
                   attempts=attempts, error=exc_or_none)
    auditor.close()  # at client close: flushes and stops the HTTP sink's thread
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Any, cast

from .._exceptions import ConfigurationError
from ..resilience import forksafety
from ._audit_event import DECISIONS, EVENT_TYPES, OUTCOMES, TRANSPORTS, AuditEvent, rfc3339
from ._audit_http import AUDIT_PATH, HTTPSink
from ._audit_sinks import (
    DEFAULT_LOGGER,
    FALLBACK_LOGGER,
    AuditSink,
    CallableSink,
    JSONLinesSink,
    LoggingSink,
    SinkLike,
    fallback_sink,
    log,
    to_fallback,
)

__all__ = [
    "AUDIT_PATH",
    "DECISIONS",
    "DEFAULT_LOGGER",
    "EVENT_TYPES",
    "FALLBACK_LOGGER",
    "OUTCOMES",
    "TRANSPORTS",
    "AuditEvent",
    "AuditSink",
    "Auditor",
    "CallableSink",
    "HTTPSink",
    "JSONLinesSink",
    "LoggingSink",
    "rfc3339",
]


class Auditor:
    """Fans each event out to ``sinks``, in order; thread-safe, never raises.

    ``sinks`` are sink objects (``emit``/``close``) or plain callables (wrapped in a
    :class:`CallableSink`); None means ``[LoggingSink()]``, an empty list means none.
    ``fallback`` (default: WARNING records on ``sark_sync.audit.fallback``) receives an event
    whose sink raised, and every event recorded after :meth:`close`.

    Counters: ``emitted`` (events fanned out), ``sink_errors`` (sink calls that raised),
    ``dropped_to_fallback`` (events handed to the fallback by the auditor itself),
    ``invalid_events`` (``record`` calls whose fields did not make an event).

    >>> auditor = Auditor([events.append])  # doctest: +SKIP
    """

    def __init__(self, sinks: Iterable[SinkLike] | None = None, *,
                 fallback: AuditSink | None = None) -> None:
        chosen: Iterable[SinkLike] = [LoggingSink()] if sinks is None else sinks
        self.sinks: tuple[AuditSink, ...] = tuple(_as_sink(s) for s in chosen)
        self.fallback: AuditSink = fallback if fallback is not None else fallback_sink()
        self.emitted = self.sink_errors = self.dropped_to_fallback = self.invalid_events = 0
        self._closed = False
        self._lock = threading.Lock()
        forksafety.register(self)

    def record(self, event_type: str = "tool_invocation", **fields: Any) -> AuditEvent | None:
        """Build an event with :meth:`AuditEvent.create` (``fields`` are its keyword
        arguments) and :meth:`emit` it; return it.

        Never raises: fields that do not make a valid event (a programming error) are logged
        by field name, counted in ``invalid_events``, and None is returned.
        """
        try:
            event = AuditEvent.create(event_type, **fields)
        except Exception as exc:
            with self._lock:
                self.invalid_events += 1
            # AuditEvent's own messages name the field, never its value; others are not shown.
            detail = str(exc) if str(exc).startswith("AuditEvent.") else "no detail"
            log.error("audit event not recorded: %s (%s)", type(exc).__name__, detail)
            return None
        self.emit(event)
        return event

    def emit(self, event: AuditEvent) -> None:
        """Hand ``event`` to every sink; a sink that raises is logged, counted and bypassed
        through the fallback. After :meth:`close`, the event goes to the fallback."""
        with self._lock:
            closed = self._closed
            if closed:
                self.dropped_to_fallback += 1
            else:
                self.emitted += 1
        if closed:
            log.warning("audit event %s recorded after Auditor.close(); it went to the "
                        "fallback sink", event.event_id)
            to_fallback(self.fallback, [event])
            return
        for sink in self.sinks:
            try:
                sink.emit(event)
            except Exception as exc:
                with self._lock:
                    self.sink_errors += 1
                    self.dropped_to_fallback += 1
                log.warning("audit sink %r failed with %s; event %s went to the fallback sink",
                            sink, type(exc).__name__, event.event_id)
                to_fallback(self.fallback, [event])

    def flush(self, timeout: float | None = None) -> None:
        """Flush every sink that can be flushed (an HTTP sink within ``timeout`` seconds)."""
        for sink in self.sinks:
            flush = getattr(sink, "flush", None)
            if flush is None:
                continue
            try:
                if isinstance(sink, HTTPSink):
                    sink.flush(timeout)
                else:
                    flush()
            except Exception as exc:
                log.warning("flushing audit sink %r failed with %s", sink, type(exc).__name__)

    def close(self) -> None:
        """Close every sink, in order (idempotent; a sink that fails to close is logged)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        for sink in self.sinks:
            try:
                sink.close()
            except Exception as exc:
                log.warning("closing audit sink %r failed with %s", sink, type(exc).__name__)

    def __enter__(self) -> Auditor:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Auditor({list(self.sinks)!r})"

    def _after_fork_in_child(self) -> None:
        self._lock = threading.Lock()


def _as_sink(sink: object) -> AuditSink:
    if hasattr(sink, "emit") and hasattr(sink, "close"):
        return cast(AuditSink, sink)
    if callable(sink):
        return CallableSink(sink)
    raise ConfigurationError(f"an audit sink needs emit() and close(), or to be callable; got "
                             f"{type(sink).__name__}")
