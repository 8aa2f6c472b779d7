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

from ._decision import AuthorizationInput, Decision
from ._principal import principal_from_token
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
