"""The governance step of the call pipeline, and the hook where every call's outcome is
reported (see ``docs/ARCHITECTURE.md``, "The pipeline", and ``docs/gateway/AUTHORIZATION.md``).

Per tool call: **deadline → authorize → breaker → retry → transport**, then the outcome hook.
:meth:`Governance.run` is that order. With an authorizer:

1. the server's and tool's metadata (sensitivity, authorized teams, sensitive parameters,
   annotations) come from the :class:`MetadataCache`, filled by the ``metadata`` callable the
   client gives (its discovery, :func:`._discovery.server_metadata`): a gateway server costs
   ``GET /api/v1/servers/{name}`` and ``GET /api/v1/tools?server=`` (1,000 tools a page) once
   per :data:`METADATA_TTL` seconds (60), through the breaker and within the first
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
``CallOutcome``, whatever happened (allowed, denied, failed, tool error), and once per other
operation with an ``OperationOutcome`` (see :meth:`Governance.operation` and
:mod:`sark_sync.governance._audit_recorder`). It runs in the calling thread, after
the call; its exceptions are logged and swallowed: a failing hook never fails a call.
``parameters`` there are the caller's, unredacted: the hook must redact. The principal id it
gets is the principal's, else the ``user_token``'s ``sub``, decoded only for a hook that is
not quiet and remembered per token (:class:`PrincipalIdCache`); a token without one gives None.
"""

from __future__ import annotations

import dataclasses
import threading
import time
import uuid
from collections.abc import Mapping
from typing import Any, Callable

from .._deadline import Deadline
from .._exceptions import (
    AuthorizationDenied,
    AuthorizationUnavailable,
    GatewayError,
    ValidationError,
)
from .._models import Principal, ServerInfo, ToolInfo, ToolResult
from .._validation import unencodable
from ..governance import (
    AuditHook,
    Auditor,
    AuthorizationInput,
    CallOutcome,
    Decision,
    Operation,
    PrincipalIdCache,
    flush_for_close,
    removed_paths,
    report,
    resolve_principal,
    silent,
    utc_timestamp,
)
from ..governance.policy import Authorizer, as_authorizer, release
from ..resilience import forksafety
from ._invocation import Invocation

__all__ = ["METADATA_TTL", "CallOutcome", "Governance", "Metadata", "MetadataCache",
           "MetadataSource"]

#: Seconds the client reuses a server's metadata (sensitivity, teams, tools) for decisions.
METADATA_TTL = 60.0
#: Servers whose metadata is kept at most (all are forgotten past it).
MAX_SERVERS = 1_000

Metadata = tuple[ServerInfo, Mapping[str, ToolInfo]]
#: Fetches a server's metadata: ``(server, local, deadline) -> (ServerInfo, {tool: ToolInfo})``.
MetadataSource = Callable[[str, bool, Deadline], Metadata]


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

    def __init__(self, authorizer: object = None, *, metadata: MetadataSource | None = None
                 ) -> None:
        #: Where the metadata of a server comes from (the client's discovery).
        self.metadata_source = metadata
        self.authorizer: Authorizer | None = (
            as_authorizer(authorizer) if authorizer is not None else None)
        #: A hook with a ``quiet()`` method returning true is skipped, timing included.
        self.audit_hook: AuditHook | None = None
        self.metadata = MetadataCache()
        #: The principal ids of the tokens seen, for the audit events.
        self.principal_ids = PrincipalIdCache()
        forksafety.register(self)

    def principal(self, principal: Principal | None, user_token: str | None
                  ) -> Principal | None:
        """Who a call is for; the token is read only when there is an authorizer to tell."""
        return resolve_principal(principal, user_token if self.authorizer is not None else None)

    def operation(self, name: str, event_type: str, transport: str, *,
                  server: str | None = None, user_token: object = None, lazy: bool = False
                  ) -> Operation | None:
        """An :class:`Operation` reporting to the audit hook; None while it is quiet (then
        nothing is measured nor built)."""
        hook = self.audit_hook
        if hook is None or silent(hook):
            return None
        return Operation(hook, self.principal_ids, name, event_type, transport, server=server,
                         user_token=user_token, lazy=lazy)

    def run(self, call: Invocation, deadline: Deadline,
            transmit: Callable[[Invocation, Deadline], ToolResult],
            user_token: str | None = None) -> ToolResult:
        """Authorize ``call``, send it with ``transmit`` and report the outcome (its
        principal, else ``user_token``'s, for the hook)."""
        hook = None if silent(self.audit_hook) else self.audit_hook
        if self.authorizer is None and hook is None:
            return transmit(call, deadline)
        started = time.perf_counter()
        decision: Decision | None = None
        sent = call
        try:
            if self.authorizer is not None:
                sent, decision = self._authorize(self.authorizer, call, deadline)
            result = transmit(sent, deadline)
            if sent.filtered:
                extra = tuple(k for k in result.filtered if k not in sent.filtered)
                result = dataclasses.replace(result, filtered=sent.filtered + extra)
        except BaseException as exc:
            self._report(hook, call, sent, decision, None, exc, started, user_token)
            raise
        self._report(hook, call, sent, decision, result, None, started, user_token)
        return result

    def _authorize(self, authorizer: Authorizer, call: Invocation, deadline: Deadline
                   ) -> tuple[Invocation, Decision]:
        server, tool = call.server, call.tool
        source = self.metadata_source
        if source is None:
            raise AuthorizationUnavailable("no metadata source for the authorizer's input",
                                           server=server, tool=tool)
        server_info, tools = self.metadata.get(
            server, deadline, lambda: source(server, call.local, deadline))
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
        except RecursionError as exc:  # encoding the input: parameters nested too deeply
            raise unencodable(exc)._with(**where) from None
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

    def _report(self, hook: AuditHook | None, call: Invocation, sent: Invocation,
                decision: Decision | None, result: ToolResult | None,
                error: BaseException | None, started: float, user_token: str | None) -> None:
        if hook is None:
            return
        if result is not None:
            outcome = "tool_error" if result.is_error else "success"
        else:
            outcome = "denied" if isinstance(error, AuthorizationDenied) else "error"
        request_id = result.request_id if result is not None else getattr(
            error, "request_id", None)
        principal = call.principal
        principal_id = principal.id if principal is not None else (
            self.principal_ids.get(user_token) if user_token is not None else None)
        report(hook, CallOutcome(
            call.server, call.tool, call.transport, principal,
            call.arguments, outcome, decision, result, error,
            request_id or sent.headers.get("X-Request-ID"),
            (time.perf_counter() - started) * 1000.0,
            None if sent.arguments is call.arguments else sent.arguments, principal_id),
            f"{call.server}/{call.tool}")

    def close(self, auditor: Auditor | None = None, *, owns_auditor: bool = False) -> None:
        """Release the authorizer; close ``auditor`` if the client built it, else flush it."""
        release(self.authorizer)
        if auditor is not None:
            if owns_auditor:
                auditor.close()
            else:
                flush_for_close(auditor)

    def _after_fork_in_child(self) -> None:
        self.metadata.after_fork()
        self.principal_ids.after_fork()

