"""The REST endpoints of the LocalGateway: the SARK Gateway API v1 as a function from request
to response.

:class:`Api` knows nothing about sockets: it takes a :class:`RecordedRequest` and returns a
:class:`Response`, so routing, authentication, pagination, validation and idempotency are one
readable unit. The HTTP handler reads and writes bytes and applies faults around it.

Order of checks, which decides which error a request with several problems gets:
route exists (404) → method allowed (405) → API key (401) → user JWT (401) → query and body
shape (400) → names known (404) → policy (403, or 503 when it cannot decide) → idempotency
(409) → the tool runs, with the parameters the policy filtered (:mod:`..policy._enforcement`).

``GET /api/v1/events`` is answered with a :class:`~._events.Subscription` instead of a
:class:`Response` once it passed the same checks (``?types=`` is validated: 400), and the
handler streams it (:mod:`._event_stream`). A malformed ``Last-Event-ID`` is not an error: the
stream starts with a ``stream_reset`` (reason ``"malformed"``) so the client knows it may have
missed events, rather than losing them silently or being refused forever.

Every invoke that reaches a tool publishes ``tool_invoked`` {request_id, server, tool,
principal (the user JWT's ``sub``, or ``null``), outcome, latency_ms}: outcome ``"success"``,
``"tool_error"`` (the result has ``isError: true``) or ``"error"`` (the upstream failed: 502,
504, or the call raised). An idempotent replay does not reach the tool and publishes nothing.

A hosted stdio server's unknown tool is a 404 at "names known", by its list of tools (502 or
504 if it cannot be listed). A call that fails answers 502 ``upstream_error`` (it exited, or
answered a JSON-RPC error), 504 ``upstream_timeout`` (no answer in time) or 400
``invalid_request`` (it refused the arguments: JSON-RPC -32602). When the call reached the
server, its tool may have run: that answer is stored under the request's Idempotency-Key like
a success, so a client retrying the 502/504 with the same key gets it replayed and the tool
never runs twice. When it never reached it (the server could not be started), nothing is
stored and a retry may run it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import threading
import time
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import unquote

from ..._models import Principal
from ..._validation import strings
from ..policy import _jwt
from ..policy._enforcement import Denied, Enforcement, Unavailable, tool_metadata
from ._events import EventLog, Subscription, parse_last_event_id, parse_types
from ._idempotency import IdempotencyStore, Outcome
from ._recording import RecordedRequest
from ._registry import Registry, UnknownName, valid_name
from ._tool_calls import UpstreamFailure
from ._wire import Response, error_response, json_bytes

__all__ = ["Api", "ApiConfig", "ApiError"]

#: Pagination bounds: the page size when ``limit`` is absent, and the largest accepted.
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
#: Longest Idempotency-Key accepted.
MAX_IDEMPOTENCY_KEY = 255

_DIGITS = re.compile(r"[0-9]{1,12}\Z")
_PRINTABLE = re.compile(r"[\x21-\x7e]+\Z")
_ROUTES = {
    "/api/v1/servers": "GET",
    "/api/v1/tools": "GET",
    "/api/v1/invoke": "POST",
    "/api/v1/events": "GET",
}


class ApiError(Exception):
    """An error answer: status, message, and extra envelope fields or headers."""

    def __init__(self, status: int, message: str, *, allow: str | None = None,
                 reached: bool = False, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.allow = allow
        self.reached = reached  # an upstream failure after the call reached the tool
        self.extra = extra  # more envelope fields (403: reason, audit_id)


@dataclass(frozen=True)
class _Caller:
    """Who sent a request: the idempotency scope of its API key, and the user of its verified
    JWT (``sub``, ``roles``, ``teams``), if any."""

    scope: str
    user: Principal | None

    @property
    def principal(self) -> str | None:
        return self.user.id if self.user is not None else None


@dataclass(frozen=True)
class ApiConfig:
    api_keys: frozenset[str]
    jwt_secret: str
    require_user_token: bool
    version: str
    idempotency_wait: float


class Api:
    """Answers the gateway's endpoints from a :class:`Registry`, an idempotency store and
    an event log (which it also publishes ``tool_invoked`` to)."""

    def __init__(
        self, config: ApiConfig, registry: Registry, store: IdempotencyStore, events: EventLog,
        enforcement: Enforcement | None = None,
    ) -> None:
        self.config = config
        self.registry = registry
        self.store = store
        self.events = events
        self.enforcement = enforcement
        self._health_lock = threading.Lock()
        self._health = "healthy"

    @property
    def health(self) -> str:
        with self._health_lock:
            return self._health

    @health.setter
    def health(self, status: str) -> None:
        if status not in ("healthy", "degraded", "unhealthy"):
            raise ValueError("health must be 'healthy', 'degraded' or 'unhealthy'")
        with self._health_lock:
            self._health = status

    def handle(self, request: RecordedRequest) -> Response | Subscription:
        """Answer one request (an event stream request with what to stream); every failure
        becomes the error envelope."""
        try:
            return self._route(request)
        except ApiError as exc:
            response = error_response(exc.status, exc.message, request.request_id, **exc.extra)
            if exc.allow is not None:
                response.headers.append(("Allow", exc.allow))
            return response

    def _route(self, request: RecordedRequest) -> Response | Subscription:
        path = request.path
        if path == "/health":
            self._allow(request, "GET")
            status = self.health
            body: dict[str, Any] = {"status": status, "version": self.config.version}
            body["servers"] = self.registry.server_count()
            return Response.json(503 if status == "unhealthy" else 200, body)
        if path.startswith("/api/v1/servers/"):
            self._allow(request, "GET")
            self._authenticate(request)
            return Response.json(200, self._get_server(path[len("/api/v1/servers/") :]))
        if path not in _ROUTES:
            raise ApiError(404, f"no such endpoint: {path}")
        self._allow(request, _ROUTES[path])
        caller = self._authenticate(request)
        if path == "/api/v1/servers":
            offset, limit = _page(request.query)
            items, total = self.registry.list_servers(offset, limit)
            return Response.json(200, _page_body("servers", items, total, offset, limit))
        if path == "/api/v1/tools":
            offset, limit = _page(request.query)
            server = request.query.get("server")
            if server is not None and not valid_name(server):
                raise ApiError(400, "query parameter 'server' is not a valid server name")
            try:
                tools, total = self.registry.list_tools(server, offset, limit)
            except UnknownName as exc:
                raise ApiError(404, str(exc)) from None
            return Response.json(200, _page_body("tools", tools, total, offset, limit))
        if path == "/api/v1/invoke":
            return self._invoke(request, caller)
        try:
            types = parse_types(request.query.get("types"))
        except ValueError as exc:
            raise ApiError(400, str(exc)) from None
        last_event_id, malformed = parse_last_event_id(request.headers.get("Last-Event-ID"))
        return Subscription(types, last_event_id, malformed)

    @staticmethod
    def _allow(request: RecordedRequest, method: str) -> None:
        allowed = (method, "HEAD") if method == "GET" else (method,)
        if request.method not in allowed:
            raise ApiError(405, f"{request.method} is not allowed here", allow=", ".join(allowed))

    def _authenticate(self, request: RecordedRequest) -> _Caller:
        """Check the API key and any user JWT; return who the caller is."""
        key = request.headers.get("X-API-Key")
        scope = hashlib.sha256(key.encode("latin-1", "replace")).hexdigest() if key else ""
        if self.config.api_keys:
            if key is None:
                raise ApiError(401, "missing X-API-Key header")
            sent = key.encode("latin-1", "replace")
            if not any(hmac.compare_digest(sent, k.encode("utf-8")) for k in self.config.api_keys):
                raise ApiError(401, "invalid API key")
        authorization = request.headers.get("Authorization")
        user = None
        if authorization is not None:
            scheme, _, token = authorization.strip().partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise ApiError(401, "Authorization must be 'Bearer <token>'")
            try:
                claims = _jwt.decode(token.strip(), self.config.jwt_secret)
            except _jwt.JWTError as exc:
                raise ApiError(401, f"invalid user token: {exc}") from None
            user = _user(claims)
        elif self.config.require_user_token and request.path == "/api/v1/invoke":
            raise ApiError(401, "a user token (Authorization: Bearer) is required")
        return _Caller(scope, user)

    def _get_server(self, raw_name: str) -> dict[str, Any]:
        name = unquote(raw_name, errors="replace")
        if not valid_name(name):
            raise ApiError(400, "server name is not valid")
        try:
            return self.registry.get_server(name)
        except UnknownName as exc:
            raise ApiError(404, str(exc)) from None

    def _invoke(self, request: RecordedRequest, caller: _Caller) -> Response:
        server, tool, parameters = _invocation(request.body)
        try:
            self.registry.require(server, tool)
        except UnknownName as exc:
            raise ApiError(404, str(exc)) from None
        except UpstreamFailure as exc:  # a hosted server that cannot list its tools
            raise ApiError(exc.status, str(exc)) from None
        parameters, filtered = self._authorize(request, caller, server, tool, parameters)
        key = request.headers.get("Idempotency-Key")
        if key is None:
            return self._run(request, caller, server, tool, parameters, filtered)
        if len(key) > MAX_IDEMPOTENCY_KEY or not _PRINTABLE.match(key):
            raise ApiError(400, f"Idempotency-Key must be 1..{MAX_IDEMPOTENCY_KEY} visible ASCII")
        canonical = {"server": server, "tool": tool, "parameters": parameters}
        fingerprint = hashlib.sha256(json.dumps(canonical, sort_keys=True).encode()).digest()
        scope = caller.scope
        claim = self.store.begin(scope, key, fingerprint, wait=self.config.idempotency_wait)
        if claim.outcome is Outcome.CONFLICT:
            raise ApiError(409, "Idempotency-Key was already used with another request body")
        if claim.outcome is Outcome.BUSY:
            raise ApiError(409, "a request with this Idempotency-Key is still in progress")
        if claim.outcome is Outcome.REPLAY and claim.response is not None:
            stored = claim.response
            headers = [*stored.headers, ("Idempotent-Replayed", "true")]
            return Response(stored.status, stored.body, stored.content_type, headers)
        try:
            response = self._run(request, caller, server, tool, parameters, filtered)
        except ApiError as exc:
            if not exc.reached:
                self.store.abandon(scope, key)
                raise
            response = error_response(exc.status, exc.message, request.request_id)
        except BaseException:
            self.store.abandon(scope, key)
            raise
        self.store.finish(scope, key, replace(response, headers=list(response.headers)))
        return response

    def _authorize(
        self, request: RecordedRequest, caller: _Caller, server: str, tool: str,
        parameters: dict[str, Any],
    ) -> tuple[dict[str, Any], list[str]]:
        """The parameters the tool may run with and the keys the policy removed (all of them
        and none without a policy); 403 on a deny, 503 when the policy cannot decide."""
        if self.enforcement is None:
            return parameters, []
        try:
            server_info = self.registry.get_server(server)
            tool_info = tool_metadata(server, tool, self.registry.tool_info(server, tool))
        except UnknownName as exc:  # removed since require()
            raise ApiError(404, str(exc)) from None
        try:
            allowed = self.enforcement.check(
                request.request_id, caller.user, server_info, tool_info, parameters)
        except Denied as exc:
            raise ApiError(403, exc.reason, reason=exc.reason,
                           audit_id=exc.audit_id) from None
        except Unavailable as exc:
            raise ApiError(503, str(exc)) from None
        return allowed.parameters, allowed.filtered

    def _run(
        self,
        request: RecordedRequest,
        caller: _Caller,
        server: str,
        tool: str,
        parameters: dict[str, Any],
        filtered: list[str],
    ) -> Response:
        started = time.perf_counter()

        def publish(outcome: str) -> None:
            latency_ms = round((time.perf_counter() - started) * 1000, 3)
            self.events.publish("tool_invoked", {
                "request_id": request.request_id, "server": server, "tool": tool,
                "principal": caller.principal, "outcome": outcome, "latency_ms": latency_ms,
            })

        try:
            result = self.registry.call(server, tool, parameters)
        except UnknownName as exc:  # removed between require() and call(): no tool reached
            raise ApiError(404, str(exc)) from None
        except UpstreamFailure as exc:
            publish("error")
            raise ApiError(exc.status, str(exc), reached=exc.reached) from None
        except BaseException:
            publish("error")
            raise
        response, is_error = self._result(request, server, tool, result, filtered)
        publish("tool_error" if is_error else "success")
        return response

    @staticmethod
    def _result(
        request: RecordedRequest, server: str, tool: str, result: dict[str, Any],
        filtered: list[str],
    ) -> tuple[Response, bool]:
        """The 200 answer for ``result`` and whether it is a tool error."""
        body = {
            "request_id": request.request_id,
            "server": server,
            "tool": tool,
            "result": result,
            "filtered": filtered,
        }
        try:
            return Response(200, json_bytes(body)), result.get("isError") is True
        except (TypeError, ValueError) as exc:
            body["result"] = {
                "content": [{"type": "text", "text": f"tool result is not JSON: {exc}"}],
                "isError": True,
            }
            return Response(200, json_bytes(body)), True


def _user(claims: dict[str, Any]) -> Principal | None:
    """The principal of verified JWT claims: ``sub`` (None without one), ``roles`` and
    ``teams`` (absent or null: none; 401 unless lists of strings, as the client reads them)."""
    try:
        roles, teams = strings(claims, "roles"), strings(claims, "teams")
    except ValueError as exc:
        raise ApiError(401, f"invalid user token: {exc}") from None
    subject = claims.get("sub")
    if not isinstance(subject, str) or not subject:
        return None
    return Principal(subject, roles, teams)


def _invocation(body: bytes) -> tuple[str, str, dict[str, Any]]:
    try:
        payload = json.loads(body)
    except ValueError:
        raise ApiError(400, "request body is not JSON") from None
    if not isinstance(payload, dict):
        raise ApiError(400, "request body must be a JSON object")
    server, tool = payload.get("server"), payload.get("tool")
    parameters = payload.get("parameters", {})
    if not isinstance(server, str) or not valid_name(server):
        raise ApiError(400, "'server' must be a valid server name")
    if not isinstance(tool, str) or not valid_name(tool):
        raise ApiError(400, "'tool' must be a valid tool name")
    if not isinstance(parameters, dict):
        raise ApiError(400, "'parameters' must be a JSON object")
    return server, tool, parameters


def _page(query: dict[str, str]) -> tuple[int, int]:
    offset = _integer(query, "offset", 0)
    limit = _integer(query, "limit", DEFAULT_LIMIT)
    if not 1 <= limit <= MAX_LIMIT:
        raise ApiError(400, f"limit must be between 1 and {MAX_LIMIT}")
    return offset, limit


def _integer(query: dict[str, str], name: str, default: int) -> int:
    raw = query.get(name)
    if raw is None:
        return default
    if not _DIGITS.match(raw):
        raise ApiError(400, f"{name} must be a non-negative integer")
    return int(raw)


def _page_body(kind: str, items: object, total: int, offset: int, limit: int) -> dict[str, Any]:
    return {kind: items, "total": total, "offset": offset, "limit": limit}
