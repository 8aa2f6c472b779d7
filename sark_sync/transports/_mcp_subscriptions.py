"""What a session asked a server to send unasked: its log level and its resource subscriptions.

:class:`Subscriptions` holds, for one :class:`~._mcp_client.McpSession`, the log level set
with ``set_logging_level`` and the callback of each subscribed resource URI, and speaks the
revision the session negotiated:

- **2024-11-05 to 2025-11-25**: ``logging/setLevel {level}``, ``resources/subscribe {uri}``
  and ``resources/unsubscribe {uri}`` requests; ``notifications/resources/updated`` comes on
  whatever stream the server picks (stdio, the HTTP listening GET, a response stream). When a
  Streamable HTTP session is renewed (the server lost it: a 404, or a forked child's own
  session, see :mod:`._mcp_http_recovery`), the new session knows neither, so both are sent
  again (:meth:`Subscriptions.after_handshake`), on the callbacks thread: the renewal holds a
  lock its requests would wait for.
- **2026-07-28** (no session): there is no ``logging/setLevel``: every request asks for logs
  with ``_meta["io.modelcontextprotocol/logLevel"]`` (:mod:`._mcp_modern`'s envelope), so
  setting the level sends nothing. There is no ``resources/subscribe`` either: the client
  opens one ``subscriptions/listen`` request whose response stream carries, after a
  ``notifications/subscriptions/acknowledged``, the list changes and the resource updates it
  asked for (:class:`ListenStream`, one per session, on ``sark-sync-mcp-<name>-subscriptions``).
  A change of the URIs ends the stream and opens a new one (updates sent in between are lost:
  they say "read it again", so the caller reads it after subscribing).

A method whose capability the server did not declare (``logging``, ``resources.subscribe``)
raises :class:`CapabilityNotSupported` before anything is sent. Callbacks run on the session's
callbacks thread (:mod:`._mcp_callbacks`), never on a reader thread.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections.abc import Mapping
from concurrent.futures import CancelledError
from typing import Any, Callable, Protocol

from .._exceptions import (
    CapabilityNotSupported,
    DeadlineExceeded,
    GatewayError,
    ProtocolError,
    RPCError,
    TransportTimeout,
    ValidationError,
)
from ..resilience import CancelToken, cancellable, forksafety
from ._base import MessageChannel
from ._mcp_callbacks import CallbackRunner
from ._mcp_logging import check_level

__all__ = ["ACKNOWLEDGED", "ListenStream", "MAX_URI_CHARS", "Subscriptions", "UpdateHandler"]

log = logging.getLogger("sark_sync.mcp")

UpdateHandler = Callable[[str], None]
#: Characters of a subscribed URI at most.
MAX_URI_CHARS = 8192
#: Seconds one ``subscriptions/listen`` request may stay open before it is opened again.
LISTEN_HORIZON = 600.0
#: Seconds before a failed listening stream is opened again, doubled per failure in a row.
LISTEN_BACKOFF, LISTEN_BACKOFF_CAP = 0.5, 30.0
#: Failures in a row after which the listening stream gives up (a dead server); a stream
#: the server ends within MIN_LISTEN_SECONDS counts as one.
MAX_LISTEN_FAILURES = 5
MIN_LISTEN_SECONDS = 1.0
#: Seconds stop() waits for the subscriptions thread once its request is cut.
LISTEN_JOIN_TIMEOUT = 5.0
LISTEN = "subscriptions/listen"
ACKNOWLEDGED = "notifications/subscriptions/acknowledged"


class Session(Protocol):
    """What :class:`Subscriptions` reads of its session (held weakly)."""

    name: str
    timeout: float
    capabilities: Mapping[str, Any]
    _channel: MessageChannel


class Subscriptions:
    """The log level and resource subscriptions of ``session``; thread-safe."""

    def __init__(self, session: Session, runner: CallbackRunner) -> None:
        self._session = weakref.ref(session)
        self.name = session.name
        self._runner = runner
        self._lock = threading.Lock()
        self.level: str | None = None
        self._callbacks: dict[str, UpdateHandler] = {}
        self._listen: ListenStream | None = None
        forksafety.register(self)

    # -- the session's methods ------------------------------------------------------------

    def set_level(self, level: object, timeout: float) -> None:
        """``logging/setLevel`` (2025) or the level of every later request's envelope."""
        level = check_level(level)
        session = self._need("logging", None, "logging/setLevel")
        modern = _modern(session._channel)
        if modern is not None:
            modern.log_level = level
        else:
            session._channel.request("logging/setLevel", {"level": level}, timeout)
        self.level = level

    def subscribe(self, uri: object, callback: object, timeout: float) -> None:
        """Call ``callback(uri)`` on each update of ``uri`` (a new callback replaces the old)."""
        uri = _check_uri(uri)
        if not callable(callback):
            raise ValidationError(f"callback must be callable, not {type(callback).__name__}")
        session = self._need("resources", "subscribe", "resources/subscribe")
        with self._lock:
            had = self._callbacks.get(uri)
            self._callbacks[uri] = callback
        try:
            if _modern(session._channel) is None:
                session._channel.request("resources/subscribe", {"uri": uri}, timeout)
            else:
                honored = self._relisten(session, timeout).get("resourceSubscriptions")
                if not isinstance(honored, list) or uri not in honored:
                    log.warning("%s did not agree to send the updates of a resource it was "
                                "asked for: none may come", self.name)
        except BaseException:
            with self._lock:
                if had is None:
                    self._callbacks.pop(uri, None)
                else:
                    self._callbacks[uri] = had
            raise

    def unsubscribe(self, uri: object, timeout: float) -> None:
        """Stop the updates of ``uri`` (one never subscribed: nothing is sent)."""
        uri = _check_uri(uri)
        session = self._need("resources", "subscribe", "resources/unsubscribe")
        with self._lock:
            if self._callbacks.pop(uri, None) is None:
                return
        if _modern(session._channel) is None:
            session._channel.request("resources/unsubscribe", {"uri": uri}, timeout)
        elif self._listen is not None:
            self._listen.refresh()

    def listen_for_changes(self) -> None:
        """At 2026-07-28, open the listening stream (if not open) so that the list changes
        the server declares reach the session; at 2025 they come anyway."""
        session = self._session()
        if session is not None and _modern(session._channel) is not None and self._filter():
            self._ensure_listen(session)

    def uris(self) -> list[str]:
        with self._lock:
            return list(self._callbacks)

    # -- what the server sends -------------------------------------------------------------

    def updated(self, params: Mapping[str, Any]) -> None:
        """``notifications/resources/updated``: its URI's callback, on the callbacks thread
        (a URI below a subscribed one, ``file:///d/x`` for ``file:///d``, reaches that one's)."""
        uri = params.get("uri")
        if not isinstance(uri, str):
            log.warning("%s sent a resource update without a URI string: skipped", self.name)
            return
        with self._lock:
            callback = self._callbacks.get(uri)
            if callback is None:
                callback = next((cb for sub, cb in self._callbacks.items()
                                 if uri.startswith(sub.rstrip("/") + "/")), None)
        if callback is None:
            log.debug("%s: an update of a resource not subscribed to", self.name)
            return
        self._runner.submit(callback, uri)

    def acknowledged(self, params: Mapping[str, Any]) -> None:
        if self._listen is not None:
            self._listen.acknowledged(params)

    # -- lifecycle ---------------------------------------------------------------------------

    def after_handshake(self) -> None:
        """After an ``initialize`` (a renewed session knows nothing of the old one's level and
        subscriptions): send them again, on the callbacks thread."""
        if self.level is not None or self.uris():
            self._runner.submit(self._restore)

    def _restore(self) -> None:
        session = self._session()
        if session is None or _modern(session._channel) is not None:
            return
        requests: list[tuple[str, dict[str, Any]]] = []
        if self.level is not None:
            requests.append(("logging/setLevel", {"level": self.level}))
        requests += [("resources/subscribe", {"uri": uri}) for uri in self.uris()]
        for method, params in requests:
            try:
                session._channel.request(method, params, session.timeout)
            except GatewayError as exc:
                log.warning("%s: could not send %s again to the new session: %s",
                            self.name, method, type(exc).__name__)
        log.info("%s: sent the log level and %d subscriptions again to the new session",
                 self.name, len(requests) - (self.level is not None))

    def close(self) -> None:
        if self._listen is not None:
            self._listen.stop()

    # -- 2026-07-28: subscriptions/listen --------------------------------------------------------

    def _ensure_listen(self, session: Session) -> ListenStream:
        with self._lock:
            if self._listen is None:
                self._listen = ListenStream(self.name, session._channel.request,
                                            self._filter)
            listen = self._listen
        listen.start()
        return listen

    def _relisten(self, session: Session, timeout: float) -> Mapping[str, Any]:
        """Open the stream again with the current URIs, wait for its acknowledgment and
        return what the server agreed to send."""
        deadline = time.monotonic() + timeout
        listen = self._ensure_listen(session)
        listen.wait_acked(listen.refresh(), deadline)
        return listen.honored

    def _filter(self) -> dict[str, Any]:
        session = self._session()
        caps = session.capabilities if session is not None else {}
        wanted: dict[str, Any] = {}
        for kind in ("tools", "prompts", "resources"):
            cap = caps.get(kind)
            if isinstance(cap, Mapping) and cap.get("listChanged") is True:
                wanted[f"{kind}ListChanged"] = True
        uris = self.uris()
        if uris:
            wanted["resourceSubscriptions"] = uris
        return wanted

    def _need(self, capability: str, sub: str | None, method: str) -> Session:
        session = self._session()
        if session is None:
            raise ValidationError("the session is gone")
        declared = session.capabilities.get(capability)
        if isinstance(declared, Mapping) and (sub is None or declared.get(sub) is True):
            return session
        what = capability if sub is None else f"{capability}.{sub}"
        raise CapabilityNotSupported(
            f"MCP server {self.name!r} did not declare the {what} capability: {method} was not "
            "sent", capability=what, method=method, server=self.name)

    def _after_fork_in_child(self) -> None:
        """A new lock: a parent thread may have held this one at the fork."""
        self._lock = threading.Lock()


class ListenStream:
    """The one ``subscriptions/listen`` request of a 2026-07-28 session, kept open on its own
    thread: opened again when it ends (gracefully, or at :data:`LISTEN_HORIZON`), after
    :data:`LISTEN_BACKOFF` (doubled) when it fails, given up after
    :data:`MAX_LISTEN_FAILURES` failures in a row or a JSON-RPC error (a server without it).
    ``request`` is the channel's, held weakly; ``notifications()`` the filter to ask for."""

    def __init__(self, name: str, request: Callable[[str, Any, float], Any],
                 notifications: Callable[[], dict[str, Any]]) -> None:
        self.name = name
        self._request = weakref.WeakMethod(request)
        self._notifications = notifications
        self._cond = threading.Condition(threading.Lock())
        self._token: CancelToken | None = None
        self._thread: threading.Thread | None = None
        self._stopped = False
        self._wake = threading.Event()
        self.started = 0  # listen requests sent
        self.acked = 0  # the number of the last one the server acknowledged
        self.honored: Mapping[str, Any] = {}
        self.error: GatewayError | None = None
        forksafety.register(self)

    def start(self) -> None:
        with self._cond:
            if self._thread is not None or self._stopped:
                return
            self.error = None
            self._thread = threading.Thread(target=self._run, daemon=True,
                                            name=f"sark-sync-mcp-{self.name}-subscriptions")
            self._thread.start()

    def refresh(self) -> int:
        """End the open request so that the next one asks for the current filter; returns
        the number that next one will have."""
        with self._cond:
            token, number = self._token, self.started
        if token is not None:
            token.cancel("subscriptions changed")
        return number

    def wait_acked(self, after: int, deadline: float) -> None:
        """Wait for the acknowledgment of a request numbered above ``after``; the stream's
        error if it gave up, :class:`TransportTimeout` at ``deadline``."""
        with self._cond:
            while self.acked <= after:
                if self.error is not None:
                    raise self.error
                left = deadline - time.monotonic()
                if left <= 0 or self._stopped:
                    raise TransportTimeout(f"MCP server {self.name!r} did not acknowledge "
                                           f"{LISTEN} in time", server=self.name)
                self._cond.wait(left)

    def acknowledged(self, params: Mapping[str, Any]) -> None:
        honored = params.get("notifications")
        with self._cond:
            self.acked = self.started
            self.honored = honored if isinstance(honored, Mapping) else {}
            self._cond.notify_all()

    def stop(self, timeout: float = LISTEN_JOIN_TIMEOUT) -> None:
        with self._cond:
            self._stopped = True
            token, thread, self._thread = self._token, self._thread, None
            self._cond.notify_all()
        self._wake.set()
        if token is not None:
            token.cancel("closing")
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def _run(self) -> None:
        failures = 0
        while True:
            request = self._request()
            with self._cond:
                if self._stopped or request is None:
                    return
                self.started += 1
                self._token = token = CancelToken()
                params = {"notifications": self._notifications()}
            begun = time.monotonic()
            error: GatewayError | None = None  # None: the server ended it gracefully
            try:
                with cancellable(token):
                    request(LISTEN, params, LISTEN_HORIZON)
            except (CancelledError, DeadlineExceeded):
                failures = 0  # a new filter, closing, or the horizon: listen again at once
                continue
            except RPCError as exc:
                self._give_up(exc, "refused")
                return
            except GatewayError as exc:
                error = exc
            finally:
                del request
            if error is None and time.monotonic() - begun >= MIN_LISTEN_SECONDS:
                failures = 0
                continue
            failures += 1  # a failure, or a stream closed at once: never a busy loop
            if failures >= MAX_LISTEN_FAILURES:
                self._give_up(error or ProtocolError(
                    f"{self.name!r} kept closing {LISTEN} at once", server=self.name), "lost")
                return
            self._wake.wait(min(LISTEN_BACKOFF * 2 ** (failures - 1), LISTEN_BACKOFF_CAP))

    def _give_up(self, error: GatewayError, how: str) -> None:
        log.warning("%s %s %s: resource updates and list changes stop (%s)", self.name, how,
                    LISTEN, type(error).__name__)
        with self._cond:
            self.error = error
            self._thread = None
            self._cond.notify_all()

    def _after_fork_in_child(self) -> None:
        """The parent's thread and request do not exist here; the child listens again on
        its next subscription."""
        self._cond = threading.Condition(threading.Lock())
        self._thread = self._token = None
        self._wake = threading.Event()


def _modern(channel: object) -> Any:
    """The 2026 request state of ``channel`` (its ``ParamHeaders``, which carries the log
    level of each envelope) when it speaks 2026-07-28, else None."""
    if getattr(channel, "modern_version", None) is None:
        return None
    return getattr(channel, "_tools", None)


def _check_uri(uri: object) -> str:
    if not isinstance(uri, str) or not uri or len(uri) > MAX_URI_CHARS:
        raise ValidationError(f"uri must be a non-empty str of at most {MAX_URI_CHARS} "
                              "characters")
    return uri
