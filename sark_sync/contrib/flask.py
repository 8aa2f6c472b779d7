"""The Flask extension: one :class:`GatewayClient` per application, its settings in
``app.config``, and the error handlers that turn a failed tool call into the right answer.

It follows Flask's extension convention: ``SarkSync(app)``, or ``ext = SarkSync()`` at import
and ``ext.init_app(app)`` in an application factory; ``app.extensions["sark_sync"]`` is the
extension; ``ext.client`` is the current application's client. Install with
``python -m pip install ".[flask]"`` (in a clone, or the wheel with its extra).

Lifecycle, and why: the client is built on first use, not in ``init_app``, so that creating
an application (``flask routes``, a test collecting) never needs the gateway's settings nor
opens anything. It is owned by the application: the extension keeps it in a weak mapping keyed
by the app and closes it when the app is garbage-collected (``weakref.finalize``), at process
exit, or on :meth:`SarkSync.close`. Nothing holds an application or its client alive: the
usual ``atexit.register(client.close)`` kept one client and its sockets per ``create_app()``
forever. A process forked after the first use (gunicorn ``--preload``) builds its own client,
and a change of the ``SARK_SYNC_*`` config (a test pointing the app at another gateway) builds
a new one, closing the old.

Settings (``app.config``; a key left out takes the environment's ``SARK_*`` default)::

    SARK_SYNC_BASE_URL, SARK_SYNC_API_KEY, SARK_SYNC_TIMEOUT, SARK_SYNC_RETRY,
    SARK_SYNC_BREAKER, SARK_SYNC_AUTHORIZER, SARK_SYNC_AUDIT, SARK_SYNC_LOCAL_SERVERS,
    SARK_SYNC_REMOTE_SERVERS, SARK_SYNC_MAX_WORKERS ...   the client: the keys of Django's
                              SARK_SYNC (sark_sync.contrib._settings), prefixed
    SARK_SYNC_TOKEN_GETTER    function(request) -> the user's token or None, or its dotted path
    SARK_SYNC_ERROR_HANDLERS  False: do not register the error handlers (default True)

The user's token: :meth:`SarkSync.invoke_tool` sends the token of the current request, taken
by ``SARK_SYNC_TOKEN_GETTER``, else the function given to :meth:`SarkSync.token_getter`, else
the ``Authorization: Bearer`` header of the request.
"""

from __future__ import annotations

import logging
import os
import threading
import weakref
from collections.abc import Mapping
from typing import Any, Callable, Optional

from flask import Flask, Request, Response, current_app, has_request_context, jsonify, request
from werkzeug.utils import import_string

from .._exceptions import ConfigurationError, GatewayError
from .._models import ToolResult
from ..client import GatewayClient
from ._http_errors import error_response
from ._settings import SETTING_KEYS, client_options

__all__ = ["CONFIG_PREFIX", "EXTENSION_NAME", "SarkSync", "TokenGetter", "bearer_token"]

_log = logging.getLogger(__name__)

#: The key of ``app.extensions``.
EXTENSION_NAME = "sark_sync"
#: The prefix of the extension's keys in ``app.config``.
CONFIG_PREFIX = "SARK_SYNC_"
#: The config keys that make up the client: a change of any of them builds a new client.
CLIENT_KEYS = tuple(CONFIG_PREFIX + key for key in SETTING_KEYS)

#: ``function(request) -> token or None``: where the user's token comes from.
TokenGetter = Callable[[Request], Optional[str]]


def bearer_token(req: Request) -> str | None:
    """The token of the request's ``Authorization: Bearer <token>`` header, or None."""
    scheme, _, token = req.headers.get("Authorization", "").partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


class _AppClient:
    """The client of one application, built on first use. Holds no reference to the app
    (the app's finalizer holds this), so that the app can be collected."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._client: GatewayClient | None = None
        self._pid = 0
        self._settings: tuple[Any, ...] = ()

    def get(self, config: Mapping[str, Any]) -> GatewayClient:
        settings = tuple(config.get(key) for key in CLIENT_KEYS)
        with self._lock:
            client = self._client
            if client is not None and not client.closed and self._pid == os.getpid() \
                    and self._settings == settings:
                return client
            self._client = None
            if client is not None:
                # Another process's copy (after fork: its connections are already dropped), or
                # built from settings that changed: either way no longer this app's client.
                client.close()
            options = client_options(
                {key[len(CONFIG_PREFIX):]: value for key, value in zip(CLIENT_KEYS, settings)},
                prefix=CONFIG_PREFIX)
            self._client = GatewayClient(**options)
            self._pid, self._settings = os.getpid(), settings
            return self._client

    def close(self) -> None:
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()


class SarkSync:
    """The sark_sync extension of one or more Flask applications.

    :param app: the application to initialise now; or call :meth:`init_app` later (once per
        application, in its factory).
    :param token_getter: ``function(request) -> token or None``, the default of every app
        whose config sets no ``SARK_SYNC_TOKEN_GETTER`` (also settable with the
        :meth:`token_getter` decorator); default :func:`bearer_token`.

    ::

        sark = SarkSync()

        def create_app():
            app = Flask(__name__)
            app.config["SARK_SYNC_BASE_URL"] = "http://gateway:8080"
            sark.init_app(app)

            @app.get("/echo")
            def echo():
                return sark.invoke_tool("demo", "echo", {"text": "hi"}).text

            return app
    """

    def __init__(self, app: Flask | None = None, *,
                 token_getter: TokenGetter | None = None) -> None:
        self._token_getter = token_getter
        self._apps: weakref.WeakKeyDictionary[Flask, _AppClient] = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        """Register the extension on ``app``: ``app.extensions["sark_sync"]``, its client
        (built on first use, closed when ``app`` is collected or at exit) and, unless
        ``SARK_SYNC_ERROR_HANDLERS`` is False, the :class:`GatewayError` handler.

        Raises RuntimeError if ``app`` already has a sark_sync extension."""
        if EXTENSION_NAME in app.extensions:
            raise RuntimeError("this Flask app already has a sark_sync extension (init_app "
                               "is called once per app)")
        holder = _AppClient()
        with self._lock:
            self._apps[app] = holder
        # Holds the holder, never the app: the client is closed when the app goes.
        weakref.finalize(app, holder.close)
        app.extensions[EXTENSION_NAME] = self
        if app.config.get(CONFIG_PREFIX + "ERROR_HANDLERS", True):
            app.register_error_handler(GatewayError, self.handle_error)

    # -- the client ------------------------------------------------------------------------------

    def get_client(self, app: Flask | None = None) -> GatewayClient:
        """The client of ``app`` (default: the current app), built on first use, rebuilt in a
        forked process or after its ``SARK_SYNC_*`` config changed.

        Raises RuntimeError outside an application context without ``app``, or for an app
        this extension was not initialised on; :class:`ConfigurationError` for invalid
        settings."""
        app = _current(app)
        return self._holder(app).get(app.config)

    @property
    def client(self) -> GatewayClient:
        """The current application's client (see :meth:`get_client`)."""
        return self.get_client()

    def close(self, app: Flask | None = None) -> None:
        """Close the client of ``app`` (default: the current app), if it was built; the next
        use builds a new one. Idempotent."""
        self._holder(_current(app)).close()

    def _holder(self, app: Flask) -> _AppClient:
        with self._lock:
            holder = self._apps.get(app)
        if holder is None:
            raise RuntimeError(f"the sark_sync extension was not initialised on app "
                               f"{app.name!r}: call init_app(app) in its factory")
        return holder

    # -- the user's token ------------------------------------------------------------------------

    def token_getter(self, func: TokenGetter) -> TokenGetter:
        """Decorator: take the user's token with ``func(request)`` (unless the app's config sets
        ``SARK_SYNC_TOKEN_GETTER``)."""
        self._token_getter = func
        return func

    def user_token(self) -> str | None:
        """The token of the current request's user, or None (no request, no token)."""
        if not has_request_context():
            return None
        getter: TokenGetter | str | None = current_app.config.get(CONFIG_PREFIX + "TOKEN_GETTER")
        if isinstance(getter, str):
            try:
                getter = import_string(getter)
            except ImportError:
                raise ConfigurationError(
                    f"{CONFIG_PREFIX}TOKEN_GETTER names nothing importable") from None
        getter = getter or self._token_getter or bearer_token
        if not callable(getter):
            raise ConfigurationError(
                f"{CONFIG_PREFIX}TOKEN_GETTER must be a callable (request) -> str | None or "
                f"its dotted path, not {type(getter).__name__}")
        return getter(request._get_current_object())  # type: ignore[attr-defined]

    def invoke_tool(self, server: str, tool: str, parameters: Mapping[str, Any] | None = None,
                    **options: Any) -> ToolResult:
        """:meth:`GatewayClient.invoke_tool` with the current app's client, on behalf of the
        current request's user (its :meth:`user_token`) unless ``user_token=`` is given."""
        if "user_token" not in options:
            options["user_token"] = self.user_token()
        return self.client.invoke_tool(server, tool, parameters, **options)

    # -- errors ----------------------------------------------------------------------------------

    def handle_error(self, error: GatewayError) -> Response:
        """The error handler: a :class:`GatewayError` raised by a view becomes 403, 429, 502,
        503 or 504 (``Retry-After`` when known) with a JSON body; the application's own
        mistakes (a bad setting, a closed client) are raised again, as any bug (500)."""
        answer = error_response(error)
        if answer is None:
            raise error
        _log.warning("a tool call of the view failed (%s), answering %d: %s",
                     type(error).__name__, answer.status, error)
        response = jsonify(answer.body)
        response.status_code = answer.status
        response.headers.update(answer.headers)
        return response

    def __repr__(self) -> str:
        return f"<SarkSync apps={len(self._apps)}>"


def _current(app: Flask | None) -> Flask:
    if app is not None:
        return app
    current: Flask = current_app._get_current_object()  # type: ignore[attr-defined]
    return current
