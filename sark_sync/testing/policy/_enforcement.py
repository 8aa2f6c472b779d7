"""The LocalGateway's policy enforcement (docs/gateway/AUTHORIZATION.md, "The LocalGateway
enforces too").

The client's pre-check is advisory; this is where a decision is binding. For each
``POST /api/v1/invoke`` that names a known tool, the gateway builds the same input document a
client would (:class:`~sark_sync.governance.AuthorizationInput`), but with the principal of
the *verified* user JWT (``sub``, ``roles``, ``teams``) and the server's and tool's metadata
from its own catalogue, and asks its policy:

- a deny answers 403 ``policy_denied`` with the policy's ``reason`` and an ``audit_id``, and
  publishes ``authorization_denied`` {request_id, server, tool, principal, reason}; the tool
  does not run;
- an allow with ``filtered_parameters`` runs the tool with exactly those (``{}`` included) and
  lists the removed keys in the answer's ``filtered``;
- a policy that cannot decide (OPA down, a malformed answer) answers 503 ``unavailable``: the
  gateway fails closed, whatever the client's settings.

The policy is one of: ``"builtin"`` (:class:`~._builtin_policy.BuiltinPolicy`, the shipped
gateway.rego's rules in Python), the base URL of an OPA server (queried at
``sark/gateway/decision`` through :class:`~sark_sync.governance.OPAAuthorizer`, whose
connections the gateway closes at ``stop()``), or any authorizer or decision function, as
``GatewayClient(authorizer=...)`` takes. Decisions are cached by their ``cache_ttl``, as in
the client. Without a policy (the default) every authenticated call is allowed.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any, NoReturn

from ..._exceptions import AuthorizationUnavailable, GatewayError
from ..._models import Principal, ServerInfo, ToolInfo
from ...governance import (
    AuthorizationInput,
    Authorizer,
    OPAAuthorizer,
    as_authorizer,
    removed_paths,
    utc_timestamp,
)
from ...governance.policy import release
from ..gateway._events import EventLog
from ._builtin_policy import BuiltinPolicy

__all__ = ["Allowed", "Denied", "Enforcement", "Unavailable", "resolve_policy", "tool_metadata"]


class Denied(Exception):
    """The policy denied the call: 403 ``policy_denied``."""

    def __init__(self, reason: str, audit_id: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.audit_id = audit_id


class Unavailable(Exception):
    """The policy could not decide: 503 ``unavailable`` (fail closed)."""


@dataclass(frozen=True)
class Allowed:
    """The parameters the tool runs with, and the keys the policy removed."""

    parameters: dict[str, Any]
    filtered: list[str]


def resolve_policy(policy: object) -> Authorizer | None:
    """The authorizer for ``LocalGateway(policy=...)`` (None: no enforcement).

    ``ValueError`` for a string that is neither ``"builtin"`` nor an http(s) URL, ``TypeError``
    for anything else that is not an authorizer or a callable.
    """
    if policy is None:
        return None
    if isinstance(policy, str):
        if policy == "builtin":
            return BuiltinPolicy()
        if policy.startswith(("http://", "https://")):
            return OPAAuthorizer(policy)
        raise ValueError("policy must be 'builtin', an OPA base URL (http://...), an "
                         f"authorizer or a decision function, not {policy!r}")
    try:
        return as_authorizer(policy)
    except GatewayError:
        raise TypeError("policy must be 'builtin', an OPA base URL, an authorizer or a "
                        f"decision function, not {type(policy).__name__}") from None


class Enforcement:
    """Asks the policy about one invoke; publishes ``authorization_denied`` on a deny."""

    def __init__(self, authorizer: Authorizer, events: EventLog) -> None:
        self.authorizer = authorizer
        self._events = events

    def check(
        self,
        request_id: str,
        principal: Principal | None,
        server: dict[str, Any],
        tool: dict[str, Any],
        parameters: dict[str, Any],
    ) -> Allowed:
        """The call as it may run; :class:`Denied` or :class:`Unavailable` otherwise."""
        request = AuthorizationInput(
            server=ServerInfo.from_dict(server), tool=ToolInfo.from_dict(tool),
            parameters=parameters, principal=principal, request_id=request_id,
            timestamp=utc_timestamp())
        try:
            decision = self.authorizer.authorize(request)
        except AuthorizationUnavailable as exc:
            raise Unavailable(f"authorization unavailable: {exc}") from None
        except GatewayError as exc:  # e.g. AuthorizationDenied raised by a decision function
            self._deny(request, getattr(exc, "reason", None) or str(exc),
                       getattr(exc, "audit_id", None))
        if not decision.allow:
            self._deny(request, decision.reason, decision.audit_id)
        filtered = decision.filtered_parameters
        if filtered is None:
            return Allowed(parameters, [])
        kept = dict(filtered)
        return Allowed(kept, removed_paths(parameters, kept))

    def _deny(self, request: AuthorizationInput, reason: str, audit_id: str | None
              ) -> NoReturn:
        principal = request.principal
        self._events.publish("authorization_denied", {
            "request_id": request.request_id, "server": request.server.server_name,
            "tool": request.tool.tool_name,
            "principal": principal.id if principal is not None else None,
            "reason": reason,
        })
        raise Denied(reason or "denied by policy", audit_id or str(uuid.uuid4()))

    def close(self) -> None:
        """Release an OPA authorizer's connections (one the gateway built, or the caller's)."""
        release(self.authorizer)


def tool_metadata(server: str, tool: str, known: dict[str, Any] | None) -> dict[str, Any]:
    """The ToolInfo of ``tool``; for a tool a hosted server did not list, the defaults (low
    sensitivity, no sensitive parameters): the server's level still applies."""
    if known is not None:
        return known
    return {"tool_name": tool, "server_name": server, "sensitivity_level": "low"}
