"""What a Streamable HTTP exchange does with an answer that is not the answer: 404, 401, 3xx.

Each of these means the server did not run the request, so sending it again is safe whatever
the tool does; each is recovered from at most once per request, then raised:

- **404 on a request that carried ``Mcp-Session-Id``**: the session is gone (the server
  restarted, or expired it). The channel opens a new session (a fresh ``initialize`` without
  the old id) and resends the request once; a second 404 raises
  :class:`~sark_sync.SessionExpiredError`.
- **401**: if the ``auth`` object has a callable ``refresh()``, it is called once and the
  request resent once; a second 401 (or no ``refresh``) raises
  :class:`~sark_sync.AuthenticationError`, which never quotes a credential.
- **307 and 308 to the same origin** (scheme, host and port) are followed, the method and
  the body kept, at most :data:`MAX_REDIRECTS` hops per request; a redirect to another origin
  (which would hand it the session and the credentials), or any other 3xx (which would turn
  the POST into a GET), raises :class:`~sark_sync.ProtocolError` without following it.

When many threads hit the same 404 (or 401) together, one of them renews the session (or the
credentials) and the others resend with the result: :class:`Renewal` counts generations
under a lock, so a thread renews only what it saw fail.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable
from urllib.parse import urljoin, urlsplit

from .._exceptions import (
    AuthenticationError,
    DeadlineExceeded,
    GatewayError,
    ProtocolError,
    SessionExpiredError,
)

__all__ = ["MAX_REDIRECTS", "Recovery", "Redirected", "Renewal", "SessionGone", "Unauthorized",
           "redirect_target"]

log = logging.getLogger("sark_sync.transports.mcp_http")

#: Same-origin redirects followed per request before giving up.
MAX_REDIRECTS = 3
#: The redirects followed: the only ones that keep the method and the body.
FOLLOWED = frozenset({307, 308})
_DEFAULT_PORTS = {"http": 80, "https": 443}


class SessionGone(Exception):
    """404 to a request that carried the session id (internal: the channel recovers)."""


class Unauthorized(Exception):
    """401 (internal: the channel refreshes the credentials, or raises ``error``)."""

    def __init__(self, error: GatewayError) -> None:
        super().__init__()
        self.error = error


class Redirected(Exception):
    """A same-origin 307/308 (internal: the channel sends the request again to ``url``)."""

    def __init__(self, url: str) -> None:
        super().__init__()
        self.url = url


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    return scheme, (parts.hostname or "").lower(), parts.port or _DEFAULT_PORTS.get(scheme)


def redirect_target(url: str, status: int, location: str | None, *, name: str) -> str:
    """Where a ``status`` redirect from ``url`` leads, if it may be followed; otherwise
    :class:`ProtocolError`, which names neither the location (it may carry a credential)
    nor the request."""
    if status not in FOLLOWED:
        raise ProtocolError(f"MCP server {name!r} answered {status} (a redirect that would turn "
                            "the POST into a GET): not followed", server=name, status_code=status)
    if not location:
        raise ProtocolError(f"MCP server {name!r} answered {status} without a Location",
                            server=name, status_code=status)
    target = urljoin(url, location)
    if _origin(target) != _origin(url):
        raise ProtocolError(f"MCP server {name!r} redirected ({status}) to another origin: not "
                            "followed", server=name, status_code=status)
    return target


class Renewal:
    """Renew a shared thing (a session, credentials) once per failure, however many threads
    saw it fail. ``generation`` goes up at each renewal; a thread reads it before its
    request and passes it to :meth:`renew` after the failure."""

    def __init__(self) -> None:
        self.generation = 0
        self._lock = threading.Lock()

    def renew(self, seen: int, action: Callable[[], None], timeout: float) -> bool:
        """Run ``action()`` unless another thread renewed since generation ``seen``; False
        if the lock could not be had within ``timeout`` seconds. ``action``'s exceptions
        propagate (the generation is unchanged: the next failure tries again)."""
        if not self._lock.acquire(timeout=max(timeout, 0.0)):
            return False
        try:
            if self.generation == seen:
                action()
                self.generation += 1
            return True
        finally:
            self._lock.release()

    def after_fork(self) -> None:
        """A new lock: a thread of the parent may have held the old one at the fork."""
        self._lock = threading.Lock()


class Recovery:
    """A channel's renewals: of its session (``reinitialize(timeout)``, the owner's
    handshake, when the server lost the session and in a forked child) and of its
    credentials (``auth.refresh()``, if the auth object has one)."""

    def __init__(self, name: str, auth: Any, reinitialize: Callable[[float], None] | None
                 ) -> None:
        self.name = name
        self.auth = auth
        self.reinitialize = reinitialize
        self.sessions = Renewal()
        self.credentials = Renewal()

    def expired(self, method: str) -> SessionExpiredError:
        return SessionExpiredError(
            f"MCP server {self.name!r} does not know the session of {method or 'a message'} "
            "(404), a new one included", status_code=404, server=self.name)

    def renew_session(self, seen: int, method: str, deadline: float,
                      opened: Callable[[], None]) -> None:
        """A new session, once for every thread that saw generation ``seen`` fail; then
        ``opened()``."""
        reinitialize = self.reinitialize
        if reinitialize is None:
            raise self.expired(method)

        def handshake() -> None:
            reinitialize(max(0.001, deadline - time.monotonic()))
            opened()
            log.info("%s: opened a new MCP session", self.name)

        if not self.sessions.renew(seen, handshake, deadline - time.monotonic()):
            raise DeadlineExceeded(f"MCP server {self.name!r}: no new session within the "
                                   "deadline", server=self.name)

    def refresh(self, seen: int, deadline: float) -> bool:
        """Call the auth's ``refresh()`` once for every thread that saw generation ``seen``
        refused; False if it has none (or the deadline ran out waiting)."""
        refresh = getattr(self.auth, "refresh", None)
        if not callable(refresh):
            return False

        def renew() -> None:
            try:
                refresh()
            except Exception as exc:  # the caller's code: its message may quote a secret
                raise AuthenticationError(f"refreshing the credentials of MCP server "
                                          f"{self.name!r} failed: {type(exc).__name__}",
                                          server=self.name) from None

        return self.credentials.renew(seen, renew, deadline - time.monotonic())

    def after_fork(self) -> None:
        self.sessions.after_fork()
        self.credentials.after_fork()
