"""Governance of tool calls: the client's authorization pre-check (docs/gateway/AUTHORIZATION.md).

``GatewayClient(authorizer=...)`` asks an authorizer before every tool call, after the
deadline starts and before the breaker, retries and transport (the pipeline drawn in
docs/gateway/ERROR_HANDLING.md). A deny raises
:class:`~sark_sync.AuthorizationDenied` and nothing is sent; an engine that cannot decide
raises :class:`~sark_sync.AuthorizationUnavailable` (fail closed) unless the authorizer was
built with ``fail_open=True``; ``filtered_parameters`` replace the call's parameters. The
gateway still enforces its own policy: this check refuses early and keeps filtered values in
the process, it does not replace the gateway's.

    import sark_sync
    from sark_sync.governance import OPAAuthorizer

    client = sark_sync.GatewayClient(
        "https://gateway.internal", authorizer=OPAAuthorizer("http://127.0.0.1:8181"))

Every tool call is also audited (``GatewayClient(audit=...)``): one :class:`AuditEvent` per
call, parameters redacted, through an :class:`Auditor` to its sinks (:class:`LoggingSink` by
default, :class:`JSONLinesSink`, :class:`HTTPSink`, :class:`CallableSink`); see
:mod:`sark_sync.governance.audit`.

See :mod:`sark_sync.governance.policy` for the authorizers, the decision cache and failure
handling.
"""

from __future__ import annotations

from ._audit_recorder import AuditHook as AuditHook
from ._audit_recorder import AuditRecorder as AuditRecorder
from ._audit_recorder import CallOutcome as CallOutcome
from ._audit_recorder import Operation as Operation
from ._audit_recorder import audited_items as audited_items
from ._audit_recorder import flush_for_close as flush_for_close
from ._audit_recorder import report as report
from ._audit_recorder import resolve_audit as resolve_audit
from ._audit_recorder import silent as silent
from ._decision import AuthorizationInput, Decision
from ._decision import removed_paths as removed_paths
from ._decision import utc_timestamp as utc_timestamp
from ._principal import PrincipalIdCache as PrincipalIdCache
from ._principal import principal_from_token
from ._principal import resolve_principal as resolve_principal
from .audit import (
    AuditEvent,
    Auditor,
    AuditSink,
    CallableSink,
    HTTPSink,
    JSONLinesSink,
    LoggingSink,
)
from .policy import (
    Authorizer,
    CallableAuthorizer,
    DecisionCache,
    OPAAuthorizer,
    SarkAuthorizer,
    as_authorizer,
)

# The names imported "as" themselves above are for the client's pipeline (its audit hook, the
# authorizer's input, the principal cache): the package's face for it, not public API, so
# they are not in __all__.
__all__ = [
    "AuditEvent",
    "AuditSink",
    "Auditor",
    "AuthorizationInput",
    "Authorizer",
    "CallableAuthorizer",
    "CallableSink",
    "Decision",
    "DecisionCache",
    "HTTPSink",
    "JSONLinesSink",
    "LoggingSink",
    "OPAAuthorizer",
    "SarkAuthorizer",
    "as_authorizer",
    "principal_from_token",
]
