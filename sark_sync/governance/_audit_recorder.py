"""From what happened to an operation to its audit event (``docs/gateway/AUDIT.md``).

The pipeline reports each operation's outcome to its governance stage's ``audit_hook``
(:mod:`sark_sync.client._governance_stage`): a :class:`CallOutcome` for a tool call, an
:class:`OperationOutcome` for every other operation (discovery, health, opening an event
stream). The client's hook is an :class:`AuditRecorder`, which turns either into one
:class:`~sark_sync.governance.AuditEvent` through the client's
:class:`~sark_sync.governance.Auditor` (the event types and fields are listed in
:mod:`sark_sync.governance.audit`).

An operation other than a tool call is followed by an :class:`Operation`: the discovery and
streaming methods open one, the requests they send add their attempts, request id and status
code to it, and it reports once, when the operation ends. A listing walked by an iterator
(``iter_servers``, ``iter_tools``) is one operation however many pages it takes: its event is
recorded when the iterator is exhausted, fails, or is closed or collected before its end; its
latency is the time spent fetching pages (not the caller's time between items) and its
attempts the sum over the pages. An iterator dropped before its first item sent nothing and
records nothing.

**Cost.** While the hook is quiet (the default :class:`LoggingSink` whose logger is not
enabled for INFO) no :class:`Operation` is made, no clock is read, no token decoded and no
event built: the hook's ``quiet()`` is asked once per operation. A hook's failure is logged
by exception type and swallowed: auditing never fails an operation.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any, Callable, TypeVar, Union

from .._exceptions import AuthorizationDenied
from .._models import Principal, ToolResult
from ._audit_event import AuditEvent
from ._audit_sinks import AuditSink, LoggingSink
from ._decision import Decision
from ._principal import PrincipalIdCache
from .audit import Auditor, HTTPSink, _as_sink

if TYPE_CHECKING:
    from ..transports.http import Response

__all__ = ["AuditHook", "AuditRecorder", "CallOutcome", "Operation", "OperationOutcome",
           "audited_items", "flush_for_close", "report", "resolve_audit", "silent"]

log = logging.getLogger("sark_sync.governance")

T = TypeVar("T")

#: The ``operation`` of a tool call's event (``invoke_tool``, ``submit``, ``invoke_many``).
INVOKE_OPERATION = "invoke_tool"


@dataclasses.dataclass(frozen=True, repr=False)
class CallOutcome:
    """What the audit hook receives about one tool call.

    ``outcome`` is ``"success"``, ``"tool_error"`` (the tool reported an error),
    ``"denied"`` (the client's authorizer or the gateway's policy) or ``"error"``;
    ``decision`` the client authorizer's (None without one, or if it failed); ``result`` or
    ``error`` what the caller got; ``transport`` ``"http"`` or ``"stdio"``;
    ``sent_parameters`` the parameters after the authorizer's filtering (what was sent, or
    would have been), None when they are ``parameters``; ``principal_id`` the principal's id,
    or without one the ``user_token``'s ``sub`` (None if it has none).
    """

    server: str
    tool: str
    transport: str
    principal: Principal | None
    parameters: Mapping[str, Any]
    outcome: str
    decision: Decision | None = None
    result: ToolResult | None = None
    error: BaseException | None = None
    request_id: str | None = None
    latency_ms: float = 0.0
    sent_parameters: Mapping[str, Any] | None = None
    principal_id: str | None = None

    def __repr__(self) -> str:
        return f"<CallOutcome {self.server}/{self.tool} {self.outcome}>"


@dataclasses.dataclass(frozen=True, repr=False)
class OperationOutcome:
    """What the audit hook receives about one operation other than a tool call.

    ``operation`` is the client method (``"list_servers"``, ``"stream_events"`` ...),
    ``event_type`` its audit event type; ``outcome`` ``"success"``, ``"denied"`` (a 403) or
    ``"error"``; ``status_code`` the failed request's, or on success the last response's;
    ``attempts`` the requests sent over every page (None when none was counted);
    ``request_id`` the failed request's, or the last one sent.
    """

    operation: str
    event_type: str
    transport: str
    outcome: str
    server: str | None = None
    principal_id: str | None = None
    error: BaseException | None = None
    request_id: str | None = None
    status_code: int | None = None
    attempts: int | None = None
    latency_ms: float = 0.0

    def __repr__(self) -> str:
        return f"<OperationOutcome {self.operation} {self.outcome}>"


AuditHook = Callable[[Union[CallOutcome, OperationOutcome]], None]


def silent(hook: AuditHook | None) -> bool:
    """True when there is no hook, or its ``quiet()`` says nobody listens."""
    if hook is None:
        return True
    quiet = getattr(hook, "quiet", None)
    return quiet is not None and bool(quiet())


def report(hook: AuditHook, outcome: CallOutcome | OperationOutcome, what: str) -> None:
    """Give ``outcome`` to ``hook``; a failure is logged by type (its message may quote a
    parameter) and swallowed."""
    try:
        hook(outcome)
    except Exception as exc:
        log.warning("the audit hook failed for %s with %s", what, type(exc).__name__)


class Operation:
    """One operation other than a tool call, followed until it reports to ``hook``.

    Used as a context manager around the work (several times for a listing walked page by
    page, with ``lazy=True``: then :meth:`finish` reports success, a failure reports at once).
    The client's requests call :meth:`sent` and :meth:`received`. Reports exactly once.
    """

    __slots__ = ("_done", "_hook", "_pending", "_principals", "_started", "_token", "attempts",
                 "event_type", "latency_ms", "lazy", "name", "request_id", "server",
                 "status_code", "transport")

    def __init__(self, hook: AuditHook, principals: PrincipalIdCache, name: str,
                 event_type: str, transport: str, *, server: str | None = None,
                 user_token: object = None, lazy: bool = False) -> None:
        self._hook = hook
        self._principals = principals
        self._token = user_token
        self._done = False
        self._pending = False  # a request was sent and not answered
        self._started = 0.0
        self.name, self.event_type, self.transport = name, event_type, transport
        self.server, self.lazy = server, lazy
        self.attempts: int | None = None
        self.request_id: str | None = None
        self.status_code: int | None = None
        self.latency_ms = 0.0

    def sent(self, request_id: str) -> None:
        """A request is about to be sent with this ``X-Request-ID``."""
        self.request_id = request_id
        self._pending = True

    def received(self, response: Response) -> None:
        """A request was answered (after ``response.attempts`` attempts)."""
        self.attempts = (self.attempts or 0) + response.attempts
        self.status_code = response.status_code
        self._pending = False

    def __enter__(self) -> Operation:
        self._started = time.perf_counter()
        return self

    def __exit__(self, kind: object, error: BaseException | None, traceback: object) -> None:
        self.latency_ms += (time.perf_counter() - self._started) * 1000.0
        if error is not None or not self.lazy:
            self.finish(error)

    def finish(self, error: BaseException | None = None) -> None:
        """Report the operation: a success, or ``error`` (only the first call reports)."""
        if self._done:
            return
        self._done = True
        attempts, status, request_id = self.attempts, self.status_code, self.request_id
        outcome = "success"
        if error is not None:
            # An error raised by a request counts its attempts and status; one raised after
            # the answer (a malformed body) was counted with the answer.
            outcome = "denied" if isinstance(error, AuthorizationDenied) else "error"
            failed = _int(getattr(error, "attempts", None))
            if failed is not None and (self._pending or attempts is None):
                attempts = (attempts or 0) + failed
            code = _int(getattr(error, "status_code", None))
            status = code if code is not None or self._pending else status
            request_id = getattr(error, "request_id", None) or request_id
        report(self._hook, OperationOutcome(
            self.name, self.event_type, self.transport, outcome, self.server,
            self._principals.get(self._token) if self._token is not None else None, error,
            request_id, status, attempts, self.latency_ms), self.name)


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def audited_items(items: Iterator[T], operation: Operation | None) -> Iterator[T]:
    """``items`` (a lazy listing whose page fetches run inside ``operation``), reporting
    ``operation`` once it is exhausted, fails, or is closed; ``items`` itself when quiet."""
    if operation is None:
        return items
    return _reporting(items, operation)


def _reporting(items: Iterator[T], operation: Operation) -> Iterator[T]:
    try:
        yield from items
    except GeneratorExit:  # closed or collected before its end: what was fetched is the lot
        operation.finish()
        raise
    except BaseException as exc:
        operation.finish(exc)
        raise
    operation.finish()


class AuditRecorder:
    """The hook that records each outcome with ``auditor`` (``docs/gateway/AUDIT.md``).

    A tool call: event type ``"authorization"`` for a denial, else ``"tool_invocation"``; the
    parameters sent (the event redacts them); the error's type, status code and attempts.
    Another operation: its own event type and operation, no parameters.

    ``quiet()`` is true while nobody listens: the auditor's only sink is a
    :class:`LoggingSink` whose logger is not enabled for its level; no event is built then."""

    def __init__(self, auditor: Auditor) -> None:
        self.auditor = auditor
        sinks = auditor.sinks
        self._logging: LoggingSink | None = (
            sinks[0] if len(sinks) == 1 and type(sinks[0]) is LoggingSink else None)

    def quiet(self) -> bool:
        sink = self._logging
        return sink is not None and not sink.logger.isEnabledFor(sink.level)

    def __call__(self, outcome: CallOutcome | OperationOutcome) -> None:
        if isinstance(outcome, OperationOutcome):
            self.auditor.record(
                outcome.event_type, operation=outcome.operation, outcome=outcome.outcome,
                error=outcome.error, principal_id=outcome.principal_id, server=outcome.server,
                transport=outcome.transport, request_id=outcome.request_id,
                status_code=outcome.status_code, attempts=outcome.attempts,
                latency_ms=outcome.latency_ms)
            return
        decision = outcome.decision
        result, error = outcome.result, outcome.error
        attempts = result.attempts if result is not None else getattr(error, "attempts", None)
        parameters = (outcome.sent_parameters if outcome.sent_parameters is not None
                      else outcome.parameters)
        self.auditor.record(
            "authorization" if outcome.outcome == "denied" else "tool_invocation",
            operation=INVOKE_OPERATION, outcome=outcome.outcome, error=error,
            principal_id=outcome.principal_id, server=outcome.server, tool=outcome.tool,
            transport=outcome.transport,
            decision=None if decision is None else ("allow" if decision.allow else "deny"),
            reason=None if decision is None else decision.reason,
            request_id=outcome.request_id, attempts=attempts,
            latency_ms=outcome.latency_ms, parameters=parameters)


def resolve_audit(audit: object) -> tuple[Auditor | None, bool]:
    """``GatewayClient(audit=...)`` as (auditor, owned): None means the default
    ``Auditor([LoggingSink()])``, owned by the client; an :class:`Auditor` is used as is; a
    sink, a callable or a list of them is wrapped in an Auditor that the client owns, but whose
    sinks stay the caller's (closing it only flushes them); ``[]`` means no audit."""
    if audit is None:
        return Auditor(), True
    if isinstance(audit, Auditor):
        return audit, False
    if isinstance(audit, (list, tuple)):
        if not audit:
            return None, False
        return Auditor([_Borrowed(s) for s in audit]), True
    return Auditor([_Borrowed(audit)]), True


def flush_for_close(auditor: Auditor) -> None:
    """Flush a caller's auditor when the client closes, boundedly: its HTTP sinks within the
    longest of their ``close_timeout`` s (``Auditor.flush()`` alone would wait for every retry
    while SARK is down). What is not delivered by then stays queued in the sink, whose own
    close(), or exit hook, delivers it or hands it to the fallback."""
    bound = max((sink.close_timeout for sink in auditor.sinks if isinstance(sink, HTTPSink)),
                default=None)
    auditor.flush(bound)


class _Borrowed:
    """A caller's sink in a client-built auditor: closing the client flushes it, never closes
    it (it is the caller's, who may share it between clients)."""

    def __init__(self, sink: object) -> None:
        self.sink: AuditSink = _as_sink(sink)

    def emit(self, event: AuditEvent) -> None:
        self.sink.emit(event)

    def flush(self) -> None:
        """Flush the sink; an HTTP sink within its ``close_timeout`` (the client's close()
        must stay bounded while SARK is down: what is not delivered stays queued, the sink's
        own close() or exit hook delivers it later)."""
        if isinstance(self.sink, HTTPSink):
            self.sink.flush(self.sink.close_timeout)
            return
        flush = getattr(self.sink, "flush", None)
        if flush is not None:
            flush()

    def close(self) -> None:
        self.flush()

    def __repr__(self) -> str:
        return repr(self.sink)
