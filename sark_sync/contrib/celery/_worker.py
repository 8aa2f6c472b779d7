"""The worker's client: one per Celery app and process, built on first use, closed by the worker.

Why the worker owns it, and how, for each pool:

- **prefork** (the default): the main process runs ``worker_init`` and forks the children
  that run tasks. A client built in the main process would be shared by every child, so
  nothing is kept there: ``worker_init`` only checks the settings, by building a client and
  closing it (a bad setting stops the worker at start, named, instead of failing every
  task). Each child builds its own on its first task and closes it on
  ``worker_process_shutdown``; a child re-forked by ``--max-tasks-per-child`` starts with
  none (``os.register_at_fork`` forgets the parent's client and replaces the lock, which
  another thread may have held at the fork).
- **threads** and **solo**: tasks run in the main process, which never sees
  ``worker_process_init`` nor ``worker_process_shutdown``: the client is built on the first
  task, shared by the pool's threads (a client is thread-safe) and closed on
  ``worker_shutdown``.

The settings are read when the client is built: ``setup(app, settings=...)``, else the app's
``sark_sync`` setting (``app.conf.sark_sync = {"BASE_URL": ...}``), else nothing; each key falls
back to the ``SARK_*`` environment (the shape of :mod:`sark_sync.contrib._settings`). Inside a
worker, a 429 or 503 whose ``Retry-After`` asks for a wait never sleeps in the worker by
default (``RetryPolicy(retry_after_max=0)``): the error is raised with ``retry_after`` and the
task is retried by Celery, which frees the worker meanwhile (:mod:`._task`).
"""

from __future__ import annotations

import logging
import os
import threading
import weakref
from collections.abc import Mapping
from typing import Any, Callable, NamedTuple, Union

from celery import Celery, current_app, current_task
from celery.signals import worker_init, worker_process_shutdown, worker_shutdown

from ..._config import RetryPolicy
from ..._exceptions import ConfigurationError
from ...client import GatewayClient
from .._settings import client_options

__all__ = ["SETTING_NAME", "Settings", "close_clients", "get_client", "owner_of", "setup"]

_log = logging.getLogger("sark_sync.contrib.celery")

#: The app setting that holds the client's settings: ``app.conf.sark_sync``.
SETTING_NAME = "sark_sync"
#: Where the settings come from: a mapping, or a function returning one (read at build time).
Settings = Union[Mapping[str, Any], Callable[[], Mapping[str, Any]], None]
#: Inside a worker, waiting out a Retry-After is Celery's job (a countdown), not a sleep.
WORKER_RETRY = RetryPolicy(retry_after_max=0)


class _Built(NamedTuple):
    pid: int
    client: GatewayClient


class _Owner:
    """The client of one app in this process."""

    def __init__(self, app: Celery, settings: Settings) -> None:
        self.app_name = str(app.main or "celery")
        self._app = weakref.ref(app)
        self._settings = settings
        self.lock = threading.Lock()
        self.built: _Built | None = None

    def options(self) -> dict[str, Any]:
        """GatewayClient arguments from the settings; ConfigurationError names a bad key."""
        source = self._settings
        if source is None:
            app = self._app()
            source = (app.conf.get(SETTING_NAME) if app is not None else None) or {}
        elif callable(source):
            source = source()
        options = client_options(source, prefix=SETTING_NAME)
        options.setdefault("retry", WORKER_RETRY)
        return options

    def client(self) -> GatewayClient:
        built, pid = self.built, os.getpid()
        if built is not None and built.pid == pid and not built.client.closed:
            return built.client
        with self.lock:
            built = self.built
            if built is not None and built.pid == pid and not built.client.closed:
                return built.client
            client = GatewayClient(**self.options())
            self.built = _Built(pid, client)
        _log.debug("built the client of Celery app %r in process %d", self.app_name, pid)
        return client

    def close(self) -> None:
        with self.lock:
            built, self.built = self.built, None
        if built is not None and built.pid == os.getpid():
            built.client.close()
            _log.info("closed the client of Celery app %r in process %d", self.app_name,
                      built.pid)

    def after_fork(self) -> None:
        """In a forked child: forget the parent's client (the parent still uses it; sark_sync
        already let go of its connections here) and replace a lock that may be held."""
        self.lock = threading.Lock()
        self.built = None


_owners: weakref.WeakKeyDictionary[Celery, _Owner] = weakref.WeakKeyDictionary()


def setup(app: Celery, *, settings: Settings = None) -> None:
    """Give ``app``'s workers a :class:`~sark_sync.GatewayClient` each, reached in a task with
    :func:`get_client` (or :class:`~sark_sync.contrib.celery.GatewayTask`'s methods).

    :param settings: the client's settings (``BASE_URL``, ``API_KEY``, ``TIMEOUT``,
        ``RETRY`` ...), as a mapping or a function returning one, read when a worker builds
        its client; by default ``app.conf.sark_sync``. A Django project passes
        ``settings=lambda: django.conf.settings.SARK_SYNC``.

    Call it once where the app is created; calling it again replaces the settings (a client
    already built is closed, and the next task builds one with the new settings). Nothing is
    built or opened here, and nothing at import time.
    """
    if not isinstance(app, Celery):
        raise ConfigurationError(f"setup() takes a Celery app, not {type(app).__name__}")
    if settings is not None and not (callable(settings) or isinstance(settings, Mapping)):
        raise ConfigurationError("settings must be a mapping or a function returning one, "
                                 f"not {type(settings).__name__}")
    old = _owners.get(app)
    _owners[app] = _Owner(app, settings)
    if old is not None:
        old.close()


def owner_of(app: Any = None) -> _Owner:
    """The owner of ``app``'s client (by default the current task's app, else the current
    app); ConfigurationError when :func:`setup` was not called for it."""
    if app is None:
        task = current_task
        app = task.app if task else current_app
    # current_app is a proxy: look up the app it stands for, not the proxy object.
    if hasattr(app, "_get_current_object"):
        app = app._get_current_object()
    owner = _owners.get(app)
    if owner is None:
        name = getattr(app, "main", None) or "celery"
        raise ConfigurationError(
            f"sark_sync.contrib.celery.setup(app) was not called for the Celery app {name!r}")
    return owner


def get_client(app: Celery | None = None) -> GatewayClient:
    """This worker process's client for ``app`` (by default the current task's app).

    Thread-safe; built on the first call in each process, never in the prefork main process
    nor at import. Raises :class:`~sark_sync.ConfigurationError` when :func:`setup` was not
    called for the app or a setting is invalid.
    """
    return owner_of(app).client()


def close_clients() -> None:
    """Close every client this process built; the next :func:`get_client` builds anew."""
    for owner in list(_owners.values()):
        owner.close()


def _on_worker_init(sender: Any = None, **kwargs: Any) -> None:
    owner = _owners.get(getattr(sender, "app", None))  # type: ignore[arg-type]
    if owner is None:
        return
    # Fail at start with the bad setting named, not in every task: a client is built and
    # closed at once (it opens nothing before its first call), so every value is checked and
    # nothing is shared with the children. Celery logs and swallows a signal handler's
    # exception: SystemExit is what stops the worker.
    try:
        GatewayClient(**owner.options()).close()
    except ConfigurationError as error:
        _log.critical("sark_sync: the settings of Celery app %r are invalid: %s",
                      owner.app_name, error)
        raise SystemExit(f"sark_sync.contrib.celery: {error}") from None


def _on_shutdown(**kwargs: Any) -> None:
    close_clients()


def _after_fork_in_child() -> None:
    for owner in list(_owners.values()):
        owner.after_fork()


worker_init.connect(_on_worker_init, weak=False, dispatch_uid="sark_sync.celery.worker_init")
worker_process_shutdown.connect(_on_shutdown, weak=False,
                                dispatch_uid="sark_sync.celery.worker_process_shutdown")
worker_shutdown.connect(_on_shutdown, weak=False, dispatch_uid="sark_sync.celery.worker_shutdown")
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
