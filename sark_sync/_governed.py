"""The governance step of the call pipeline, and the hook where every call's outcome is
reported (DESIGN §5, §7).

Per tool call: **deadline → authorize → breaker → retry → transport**, then the outcome hook.
:meth:`Governance.run` is that order. With an authorizer:

1. the server's and tool's metadata (sensitivity, authorized teams, sensitive parameters,
   annotations) come from the :class:`MetadataCache`: a gateway server costs
   ``GET /api/v1/servers/{name}`` and ``GET /api/v1/tools?server=`` (1,000 tools a page) once
   per ``metadata_ttl`` seconds (60 by default), through the breaker and within the first
   call's deadline; a local server's come from its ``tools/list``, with sensitivity
   ``"medium"`` and no teams. Concurrent calls share one fetch;
2. the authorizer decides on the :class:`AuthorizationInput`, with what is left of the
   deadline. A deny raises :class:`AuthorizationDenied` (``code="policy_denied"``, no status
   code: nothing was sent) before the breaker, so it is never counted nor retried; a
   deadline that ran out meanwhile raises :class:`DeadlineExceeded` (``attempts=0``);
3. ``filtered_parameters``, when not None, replace the parameters (re-encoded), and the
   removed paths go to ``ToolResult.filtered``. The input's ``request_id`` is the call's
   ``X-Request-ID``, to join the client's decision with the gateway's logs.

**Audit hook.** :attr:`Governance.audit_hook`, when set, is called once per call with a
:class:`CallOutcome`, whatever happened (allowed, denied, failed, tool error). It runs in the
calling thread, after the call; its exceptions are logged and swallowed: a failing hook never
fails a call. ``parameters`` there are the caller's, unredacted: the hook must redact.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Callable
from urllib.parse import quote

from . import _forksafety
from ._deadline import Deadline
from ._exceptions import (
    AuthorizationDenied,
    AuthorizationUnavailable,
    GatewayError,
    ProtocolError,
    ValidationError,
)
from ._invocation import Invocation
from ._models import Principal, ServerInfo, ToolInfo, ToolResult
from ._pagination import paginate
from .governance._audit_event import AuditEvent
from .governance._audit_sinks import AuditSink, LoggingSink
from .governance._decision import AuthorizationInput, Decision, removed_paths, utc_timestamp
from .governance._principal import resolve_principal
from .governance.audit import Auditor, _as_sink
from .governance.policy import Authorizer, as_authorizer, release

if TYPE_CHECKING:
    from ._client import GatewayClient

__all__ = ["METADATA_TTL", "AuditRecorder", "CallOutcome", "Governance", "MetadataCache",
           "audit_hook", "quiet_check", "resolve_audit"]

log = logging.getLogger("sark_sync.governance")

#: Seconds the client reuses a server's metadata (sensitivity, teams, tools) for decisions.
METADATA_TTL = 60.0
#: Servers whose metadata is kept at most (all are forgotten past it).
MAX_SERVERS = 1_000
#: Tools asked per page when fetching a server's metadata.
TOOLS_PAGE = 1_000

Metadata = tuple[ServerInfo, Mapping[str, ToolInfo]]


@dataclasses.dataclass(frozen=True, repr=False)
class CallOutcome:
    """What the audit hook receives about one tool call.

    ``outcome`` is ``"success"``, ``"tool_error"`` (the tool reported an error),
    ``"denied"`` (the client's authorizer or the gateway's policy) or ``"error"``;
    ``decision`` the client authorizer's (None without one, or if it failed); ``result`` or
    ``error`` what the caller got; ``transport`` ``"http"`` or ``"stdio"``;
    ``sent_parameters`` the parameters after the authorizer's filtering (what was sent, or
    would have been), None when they are ``parameters``.
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

    def __repr__(self) -> str:
        return f"<CallOutcome {self.server}/{self.tool} {self.outcome}>"


AuditHook = Callable[[CallOutcome], None]


class MetadataCache:
    """Servers' metadata for authorization inputs, each kept ``ttl`` seconds (0: refetched
    for every call). Thread-safe; one fetch per server at a time, the others wait for it
    within their deadlines."""

    def __init__(self, ttl: float = METADATA_TTL, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: dict[str, tuple[float, Metadata]] = {}
        self._fetching: dict[str, threading.Lock] = {}

    def get(self, server: str, deadline: Deadline, fetch: Callable[[], Metadata]) -> Metadata:
        entry = self._entries.get(server)
        if entry is not None and entry[0] > self._clock():
            return entry[1]
        with self._lock:
            fetching = self._fetching.setdefault(server, threading.Lock())
        if not fetching.acquire(timeout=deadline.remaining()):
            raise deadline.exceeded(f"waiting for the metadata of server {server!r}",
                                    attempts=0, server=server)
        try:
            entry = self._entries.get(server)
            if entry is not None and entry[0] > self._clock():
                return entry[1]
            metadata = fetch()
            with self._lock:
                if len(self._entries) >= MAX_SERVERS:
                    self._entries.clear()
                self._entries[server] = (self._clock() + self.ttl, metadata)
            return metadata
        finally:
            fetching.release()

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def after_fork(self) -> None:
        self._lock = threading.Lock()
        self._fetching = {}


class Governance:
    """A client's authorizer, metadata cache and audit hook."""

    def __init__(self, authorizer: object = None, *, metadata_ttl: float = METADATA_TTL
                 ) -> None:
        self.authorizer: Authorizer | None = (
            as_authorizer(authorizer) if authorizer is not None else None)
        #: A hook with a ``quiet()`` method returning true is skipped, timing included.
        self.audit_hook: AuditHook | None = None
        self.metadata = MetadataCache(metadata_ttl)
        _forksafety.register(self)

    def principal(self, principal: Principal | None, user_token: str | None
                  ) -> Principal | None:
        """Who a call is for; the token is read only when there is an authorizer to tell."""
        if self.authorizer is None:
            if principal is not None and not isinstance(principal, Principal):
                raise ValidationError(
                    f"principal must be a sark_sync.Principal, not {type(principal).__name__}")
            return principal
        return resolve_principal(principal, user_token)

    def run(self, client: GatewayClient, call: Invocation, deadline: Deadline,
            transmit: Callable[[Invocation, Deadline], ToolResult]) -> ToolResult:
        """Authorize ``call``, send it with ``transmit`` and report the outcome."""
        if self.authorizer is None and _silent(self.audit_hook):
            return transmit(call, deadline)
        started = time.perf_counter()
        decision: Decision | None = None
        sent = call
        try:
            if self.authorizer is not None:
                sent, decision = self._authorize(self.authorizer, client, call, deadline)
            result = transmit(sent, deadline)
            if sent.filtered:
                extra = tuple(k for k in result.filtered if k not in sent.filtered)
                result = dataclasses.replace(result, filtered=sent.filtered + extra)
        except BaseException as exc:
            self._report(call, sent, decision, None, exc, started)
            raise
        self._report(call, sent, decision, result, None, started)
        return result

    def _authorize(self, authorizer: Authorizer, client: GatewayClient, call: Invocation,
                   deadline: Deadline) -> tuple[Invocation, Decision]:
        server, tool = call.server, call.tool
        server_info, tools = self.metadata.get(
            server, deadline, lambda: _discover(client, server, call.local, deadline))
        request_id = call.headers.get("X-Request-ID") or str(uuid.uuid4())
        request = AuthorizationInput(
            server_info, tools.get(tool) or ToolInfo(tool_name=tool, server_name=server),
            call.arguments, call.principal, request_id, utc_timestamp())
        where: dict[str, Any] = {"server": server, "tool": tool, "request_id": request_id}
        try:
            decision = Decision.coerce(authorizer.authorize(request, timeout=deadline.remaining()))
        except GatewayError as exc:
            exc._with(**where)
            if deadline.expired and isinstance(exc, AuthorizationUnavailable):
                raise deadline.exceeded("waiting for the authorizer", last_error=exc,
                                        attempts=0, **where) from exc
            raise
        except Exception as exc:  # an authorizer object of the caller's that broke its contract
            raise AuthorizationUnavailable(
                f"authorizer {type(authorizer).__name__} failed: {type(exc).__name__}",
                **where) from exc
        if deadline.expired:
            raise deadline.exceeded("waiting for the authorizer", attempts=0, **where)
        if not decision.allow:
            raise AuthorizationDenied(
                f"the client's authorizer denied {server}/{tool}: "
                f"{decision.reason or 'no reason given'}",
                reason=decision.reason, audit_id=decision.audit_id, code="policy_denied",
                **where)
        headers = call.headers if call.local else {**call.headers, "X-Request-ID": request_id}
        filtered = decision.filtered_parameters
        if filtered is None:
            return call.replace(headers=headers), decision
        try:
            allowed = call.replace(headers=headers, arguments=filtered,
                                   filtered=tuple(removed_paths(call.arguments, filtered)))
        except ValidationError:
            raise AuthorizationUnavailable(
                "the authorizer's filtered_parameters are not JSON", **where) from None
        return allowed, decision

    def _report(self, call: Invocation, sent: Invocation, decision: Decision | None,
                result: ToolResult | None, error: BaseException | None, started: float
                ) -> None:
        hook = self.audit_hook
        if hook is None or _silent(hook):
            return
        if result is not None:
            outcome = "tool_error" if result.is_error else "success"
        else:
            outcome = "denied" if isinstance(error, AuthorizationDenied) else "error"
        request_id = result.request_id if result is not None else getattr(
            error, "request_id", None)
        try:
            hook(CallOutcome(
                call.server, call.tool, "stdio" if call.local else "http", call.principal,
                call.arguments, outcome, decision, result, error,
                request_id or sent.headers.get("X-Request-ID"),
                (time.perf_counter() - started) * 1000.0,
                None if sent.arguments is call.arguments else sent.arguments))
        except Exception as exc:  # by type only: its message may quote a parameter
            log.warning("the audit hook failed for %s/%s with %s", call.server, call.tool,
                        type(exc).__name__)

    def close(self) -> None:
        release(self.authorizer)

    def _after_fork_in_child(self) -> None:
        self.metadata.after_fork()


def _silent(hook: AuditHook | None) -> bool:
    if hook is None:
        return True
    quiet = getattr(hook, "quiet", None)
    return quiet is not None and bool(quiet())


class AuditRecorder:
    """The hook that records each :class:`CallOutcome` with ``auditor`` (DESIGN §7): event
    type ``"authorization"`` for a denial, else ``"tool_invocation"``; the parameters sent
    (the event redacts them); the error's type, status code and attempts.

    ``quiet()`` is true while nobody listens: the auditor's only sink is a
    :class:`LoggingSink` whose logger is not enabled for its level; no event is built then."""

    def __init__(self, auditor: Auditor) -> None:
        self.auditor = auditor
        self._check = quiet_check(auditor)

    def quiet(self) -> bool:
        return self._check is not None and self._check()

    def __call__(self, outcome: CallOutcome) -> None:
        record = self.auditor.record
        decision = outcome.decision
        result, error = outcome.result, outcome.error
        attempts = result.attempts if result is not None else getattr(error, "attempts", None)
        parameters = (outcome.sent_parameters if outcome.sent_parameters is not None
                      else outcome.parameters)
        record(
            "authorization" if outcome.outcome == "denied" else "tool_invocation",
            outcome=outcome.outcome, error=error,
            principal_id=outcome.principal.id if outcome.principal is not None else None,
            server=outcome.server, tool=outcome.tool, transport=outcome.transport,
            decision=None if decision is None else ("allow" if decision.allow else "deny"),
            reason=None if decision is None else decision.reason,
            request_id=outcome.request_id, attempts=attempts,
            latency_ms=outcome.latency_ms, parameters=parameters)


def audit_hook(auditor: Auditor) -> AuditRecorder:
    """The :class:`AuditRecorder` of ``auditor``."""
    return AuditRecorder(auditor)


def quiet_check(auditor: Auditor) -> Callable[[], bool] | None:
    """For an auditor whose only sink is a :class:`LoggingSink`: a check that is true while
    its logger is not enabled for its level (nobody listens, so no event is built)."""
    sinks = auditor.sinks
    if len(sinks) != 1 or type(sinks[0]) is not LoggingSink:
        return None
    sink = sinks[0]
    return lambda: not sink.logger.isEnabledFor(sink.level)


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


class _Borrowed:
    """A caller's sink in a client-built auditor: closing the client flushes it, never closes
    it (it is the caller's, who may share it between clients)."""

    def __init__(self, sink: object) -> None:
        self.sink: AuditSink = _as_sink(sink)

    def emit(self, event: AuditEvent) -> None:
        self.sink.emit(event)

    def flush(self) -> None:
        flush = getattr(self.sink, "flush", None)
        if flush is not None:
            flush()

    def close(self) -> None:
        self.flush()

    def __repr__(self) -> str:
        return repr(self.sink)


def _discover(client: GatewayClient, server: str, local: bool, deadline: Deadline
              ) -> Metadata:
    """A server's metadata: from the gateway's catalogue, or a local server's tool list."""
    pool = client._local(server) if local else None
    if pool is not None:
        tools = pool.list_tools(server, deadline)
        return ServerInfo(server_name=server, transport="stdio"), {t.name: t for t in tools}
    response = client._send("GET", f"/api/v1/servers/{quote(server, safe='')}", server=server,
                            deadline=deadline)
    try:
        info = ServerInfo.from_dict(response.data)
    except ValueError as exc:
        raise ProtocolError(f"malformed server response for {server!r}: {exc}",
                            server=server) from None
    listing = paginate(lambda offset: client._tool_page(server, offset, TOOLS_PAGE, deadline),
                       key=lambda t: t.tool_name)
    return info, {t.tool_name: t for t in listing if t.server_name == server}
