"""Authorizers: who decides, before a call leaves the process, whether it may.

See docs/gateway/AUTHORIZATION.md.

An authorizer is anything with ``authorize(request, *, timeout=None) -> Decision``, where
``request`` is an :class:`AuthorizationInput` and ``timeout`` the seconds the call's deadline
leaves for the decision. Three are provided:

- :class:`OPAAuthorizer` asks an Open Policy Agent through its Data API,
  ``POST <url>/v1/data/<policy_path>`` with ``{"input": <input document>}``;
- :class:`SarkAuthorizer` asks SARK, ``POST <url>/api/v1/gateway/authorize`` with the input
  document, sending ``X-API-Key``;
- :class:`CallableAuthorizer` wraps a function ``(AuthorizationInput) -> Decision | Mapping``;
  ``GatewayClient(authorizer=func)`` wraps a plain callable in it.

**Fail closed.** An engine that cannot be reached, does not answer in time, answers a non-2xx
status, or answers something that is not a well-formed decision, raises
:class:`~sark_sync.AuthorizationUnavailable`, and the call is refused. Built with
``fail_open=True``, an authorizer allows the call instead (reason ``"... allowed because
fail_open=True"``) and logs a warning on ``sark_sync.governance``; it never turns a
well-formed deny into an allow. An undefined OPA result (``{}``: no rule matched) and a
decision object without ``allow`` are denies, not failures.

**Caching.** With ``cache=True`` (the default) a decision that says ``cache_ttl: N`` (N > 0) is
reused for N seconds for calls with the same principal (id, roles, teams), server, tool,
parameters and server/tool metadata (:meth:`AuthorizationInput.cache_key`); ``cache_ttl: 0``,
the default, is never cached, nor is a fail-open allow. The cache is thread-safe and bounded
(:data:`DEFAULT_CACHE_SIZE` entries, least recently used first out). Pass a
:class:`DecisionCache` to size it, share it, or give it a clock.

Engine authorizers hold a small pool of keep-alive connections; :meth:`close` releases them
(the authorizer stays usable and reconnects), as does the ``close()`` of a client using it,
and a forked child opens its own.
"""

from __future__ import annotations

import abc
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Hashable, Mapping
from typing import Any, Callable, Protocol, TypeVar, Union
from urllib.parse import quote

from .._config import resolve_api_key
from .._exceptions import AuthorizationUnavailable, ConfigurationError, GatewayError
from .._redact import Secret
from ..resilience import forksafety
from ._decision import AuthorizationInput, Decision
from ._http import DEFAULT_TIMEOUT, EngineClient, check_timeout, check_url

__all__ = [
    "DEFAULT_CACHE_SIZE",
    "Authorizer",
    "AuthorizerLike",
    "CallableAuthorizer",
    "DecisionCache",
    "OPAAuthorizer",
    "SarkAuthorizer",
    "as_authorizer",
    "release",
]

log = logging.getLogger("sark_sync.governance")

#: Decisions an authorizer's cache holds at most.
DEFAULT_CACHE_SIZE = 10_000
#: The OPA rule asked by default: the shipped policy's decision object.
DEFAULT_POLICY_PATH = "sark/gateway/decision"
#: SARK's authorization endpoint.
SARK_AUTHORIZE_PATH = "/api/v1/gateway/authorize"

_E = TypeVar("_E", bound="_EngineAuthorizer")

DecisionFunction = Callable[[AuthorizationInput], Union[Decision, Mapping[str, Any]]]


class Authorizer(Protocol):
    """What ``GatewayClient(authorizer=...)`` calls before each tool call."""

    def authorize(self, request: AuthorizationInput, *, timeout: float | None = None
                  ) -> Decision: ...


#: What ``GatewayClient(authorizer=...)`` accepts.
AuthorizerLike = Union[Authorizer, DecisionFunction]


class DecisionCache:
    """Decisions by :meth:`AuthorizationInput.cache_key`, each kept for its ``cache_ttl``.

    Thread-safe; holds at most ``max_entries`` (the least recently used go first); ``clock``
    (monotonic seconds) is injectable for tests. ``max_entries=0`` caches nothing.
    """

    def __init__(self, max_entries: int = DEFAULT_CACHE_SIZE, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if isinstance(max_entries, bool) or not isinstance(max_entries, int) or max_entries < 0:
            raise ConfigurationError(f"max_entries must be an int >= 0, got {max_entries!r}")
        self.max_entries = max_entries
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: OrderedDict[Hashable, tuple[float, Decision]] = OrderedDict()
        forksafety.register(self)

    def get(self, key: Hashable) -> Decision | None:
        """The live decision for ``key``, or None (an expired one is dropped)."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            if entry[0] <= self._clock():
                del self._entries[key]
                return None
            self._entries.move_to_end(key)
            return entry[1]

    def put(self, key: Hashable, decision: Decision) -> None:
        """Keep ``decision`` for ``decision.cache_ttl`` seconds (0: not at all)."""
        if decision.cache_ttl <= 0 or self.max_entries == 0:
            return
        with self._lock:
            self._entries[key] = (self._clock() + decision.cache_ttl, decision)
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)

    def _after_fork_in_child(self) -> None:
        self._lock = threading.Lock()


class _BaseAuthorizer(abc.ABC):
    """Caching and fail-open around ``_decide``, which subclasses implement."""

    def __init__(self, *, cache: bool | DecisionCache, fail_open: bool) -> None:
        if isinstance(cache, DecisionCache):
            self.cache: DecisionCache | None = cache
        elif isinstance(cache, bool):
            self.cache = DecisionCache() if cache else None
        else:
            raise ConfigurationError("cache must be a bool or a DecisionCache")
        self.fail_open = bool(fail_open)

    def authorize(self, request: AuthorizationInput, *, timeout: float | None = None
                  ) -> Decision:
        """The decision for ``request``, from the cache or the engine, within ``timeout``
        seconds (None: the authorizer's own limit). Raises :class:`AuthorizationUnavailable`
        when no decision could be had, unless built with ``fail_open=True``."""
        cache = self.cache
        key: Hashable = None
        if cache is not None:
            try:
                key = request.cache_key()
            except (TypeError, ValueError) as exc:  # parameters JSON cannot carry
                error = AuthorizationUnavailable(
                    f"the authorization input is not JSON: {type(exc).__name__}")
                return self._unavailable(request, error, exc)
            hit = cache.get(key)
            if hit is not None:
                return hit
        try:
            decision = self._decide(request, timeout)
        except AuthorizationUnavailable as exc:
            return self._unavailable(request, exc, exc.__cause__)
        if cache is not None:
            cache.put(key, decision)
        return decision

    @abc.abstractmethod
    def _decide(self, request: AuthorizationInput, timeout: float | None) -> Decision:
        """The engine's decision, or :class:`AuthorizationUnavailable`."""

    def _unavailable(self, request: AuthorizationInput, error: AuthorizationUnavailable,
                     cause: BaseException | None) -> Decision:
        if not self.fail_open:
            raise error from cause
        log.warning("authorization unavailable for %s/%s, allowing it (fail_open=True): %s",
                    request.server.server_name, request.tool.tool_name, error)
        return Decision(True, f"authorization unavailable ({error.message}); allowed because "
                              "fail_open=True")


class _EngineAuthorizer(_BaseAuthorizer):
    """An authorizer asking a policy engine over HTTP (one POST a decision)."""

    def __init__(self, endpoint: str, *, timeout: float, verify: bool | str | None,
                 cache: bool | DecisionCache, fail_open: bool,
                 api_key: Secret | None = None) -> None:
        super().__init__(cache=cache, fail_open=fail_open)
        self.timeout = check_timeout(timeout)
        self._engine = EngineClient(endpoint, verify=verify, api_key=api_key)

    @property
    def endpoint(self) -> str:
        """The URL decisions are asked from."""
        return self._engine.url

    def _post(self, document: Mapping[str, Any], timeout: float | None) -> Any:
        budget = self.timeout if timeout is None else min(self.timeout, timeout)
        return self._engine.post(document, budget)[1]

    def _malformed(self, problem: str) -> AuthorizationUnavailable:
        return AuthorizationUnavailable(f"malformed decision from the policy engine: {problem}",
                                        method="POST", url=self.endpoint)

    def close(self) -> None:
        """Close the pooled connections now; a later decision opens new ones."""
        self._engine.close()

    def __enter__(self: _E) -> _E:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class OPAAuthorizer(_EngineAuthorizer):
    """Decisions from Open Policy Agent's Data API.

    :param url: OPA's base URL, e.g. ``"http://127.0.0.1:8181"``.
    :param policy_path: the rule whose value is the decision object, slash-separated
        (``"sark/gateway/decision"`` is ``data.sark.gateway.decision``).
    :param timeout: seconds a decision may take (the call's deadline bounds it too).
    :param verify: TLS verification, as for the client (None: the environment's CA bundle).
    :param cache: True (a :class:`DecisionCache`), False, or the cache to use.
    :param fail_open: allow calls when OPA gives no usable decision (see the module doc).

    The answer's ``result`` must be a decision object (``{"allow": bool, "reason": str,
    "filtered_parameters": object | null, "cache_ttl": int}``); no ``result`` (undefined) is
    a deny; a boolean or any other value is malformed. OPA's ``decision_id`` becomes the
    decision's ``audit_id``. Raises :class:`ConfigurationError` for a bad URL, path or timeout.

    >>> OPAAuthorizer("http://127.0.0.1:8181").endpoint
    'http://127.0.0.1:8181/v1/data/sark/gateway/decision'
    """

    def __init__(self, url: str, policy_path: str = DEFAULT_POLICY_PATH, *,
                 timeout: float = DEFAULT_TIMEOUT, verify: bool | str | None = None,
                 cache: bool | DecisionCache = True, fail_open: bool = False) -> None:
        segments = policy_path.strip("/").split("/") if isinstance(policy_path, str) else []
        if not segments or not all(s and all(c.isalnum() or c in "_-" for c in s)
                                   for s in segments):
            raise ConfigurationError(
                f"policy_path must be a slash-separated rule path like "
                f"'sark/gateway/decision', got {policy_path!r}")
        self.policy_path = "/".join(segments)
        path = "/".join(quote(s, safe="") for s in segments)
        super().__init__(f"{check_url(url, 'OPA')}/v1/data/{path}", timeout=timeout,
                         verify=verify, cache=cache, fail_open=fail_open)

    def _decide(self, request: AuthorizationInput, timeout: float | None) -> Decision:
        answer = self._post({"input": request.to_dict()}, timeout)
        if not isinstance(answer, Mapping):
            raise self._malformed(f"the answer is not a JSON object but {type(answer).__name__}")
        decision_id = answer.get("decision_id")
        audit_id = decision_id if isinstance(decision_id, str) else None
        if "result" not in answer:
            return Decision(False, f"policy {self.policy_path} is undefined for this call",
                            audit_id=audit_id)
        try:
            return Decision.from_dict(answer["result"], audit_id=audit_id)
        except ValueError as exc:
            raise self._malformed(f"{self.policy_path}: {exc}") from None

    def __repr__(self) -> str:
        return f"OPAAuthorizer({self.endpoint!r}, fail_open={self.fail_open})"


class SarkAuthorizer(_EngineAuthorizer):
    """Decisions from SARK's ``POST /api/v1/gateway/authorize``, which answers the decision
    object itself.

    :param url: SARK's base URL.
    :param api_key: sent as ``X-API-Key``; default ``$SARK_API_KEY``; never shown.
    :param timeout, verify, cache, fail_open: as for :class:`OPAAuthorizer`.

    An empty object (no ``allow``) is a deny; a non-2xx status is
    :class:`AuthorizationUnavailable`.
    """

    def __init__(self, url: str, *, api_key: str | None = None,
                 timeout: float = DEFAULT_TIMEOUT, verify: bool | str | None = None,
                 cache: bool | DecisionCache = True, fail_open: bool = False) -> None:
        key = resolve_api_key(api_key)
        super().__init__(check_url(url, "SARK") + SARK_AUTHORIZE_PATH, timeout=timeout,
                         verify=verify, cache=cache, fail_open=fail_open,
                         api_key=Secret(key) if key is not None else None)
        self._has_key = key is not None

    def _decide(self, request: AuthorizationInput, timeout: float | None) -> Decision:
        try:
            return Decision.from_dict(self._post(request.to_dict(), timeout))
        except ValueError as exc:
            raise self._malformed(str(exc)) from None

    def __repr__(self) -> str:
        key = "[secure]" if self._has_key else "None"
        return f"SarkAuthorizer({self.endpoint!r}, api_key={key}, fail_open={self.fail_open})"


class CallableAuthorizer(_BaseAuthorizer):
    """An authorizer from a function ``(AuthorizationInput) -> Decision | Mapping`` (a mapping
    is parsed as a decision object).

    The function runs in the calling thread and cannot be interrupted: keep it fast (the
    call's deadline is checked when it returns). If it raises a :class:`GatewayError` (e.g.
    :class:`AuthorizationDenied`), that propagates; any other exception, or a return value
    that is not a well-formed decision, is :class:`AuthorizationUnavailable` (or an allow with
    ``fail_open=True``). Its decisions are cached as the engines' are (``cache_ttl``).
    """

    def __init__(self, function: DecisionFunction, *, cache: bool | DecisionCache = True,
                 fail_open: bool = False) -> None:
        if not callable(function):
            raise ConfigurationError("CallableAuthorizer needs a callable")
        super().__init__(cache=cache, fail_open=fail_open)
        self.function = function

    def _decide(self, request: AuthorizationInput, timeout: float | None) -> Decision:
        name = getattr(self.function, "__qualname__", type(self.function).__name__)
        try:
            value = self.function(request)
        except GatewayError:
            raise
        except Exception as exc:
            raise AuthorizationUnavailable(
                f"authorizer {name} raised {type(exc).__name__}") from exc
        try:
            return Decision.coerce(value)
        except ValueError as exc:
            raise AuthorizationUnavailable(
                f"authorizer {name} returned a malformed decision: {exc}") from None

    def __repr__(self) -> str:
        return f"CallableAuthorizer({self.function!r}, fail_open={self.fail_open})"


def as_authorizer(value: object) -> Authorizer:
    """``value`` if it has an ``authorize`` method, a :class:`CallableAuthorizer` of it if it
    is callable; :class:`ConfigurationError` otherwise."""
    if callable(getattr(value, "authorize", None)):
        return value  # type: ignore[return-value]
    if callable(value):
        return CallableAuthorizer(value)
    raise ConfigurationError(
        "authorizer must be an OPAAuthorizer, a SarkAuthorizer, an object with authorize(), or "
        f"a callable, not {type(value).__name__}")


def release(authorizer: object) -> None:
    """Close the connections of an engine authorizer (it stays usable); other authorizers,
    the caller's own included, are left alone: they may be shared and are not ours."""
    if isinstance(authorizer, _EngineAuthorizer):
        authorizer.close()
