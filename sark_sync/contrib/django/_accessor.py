"""The process's client: built on first use, rebuilt after ``fork()`` and when settings change.

A client built at import time (a module-level ``client = GatewayClient()``) crashes
``manage.py check`` and ``migrate`` wherever the gateway URL is not set, and binds every test to
the first test's settings. :func:`get_client` builds it only when a view first needs it and
keeps it for the process, and replaces it when:

- the process is a fork of the one that built it (gunicorn ``--preload``, Celery prefork): the
  child builds its own, leaving the parent's (whose sockets sark_sync already let go of in the
  child) untouched; ``os.register_at_fork`` also replaces the lock, which another thread may
  have held at the moment of the fork;
- ``settings.SARK_SYNC`` changed: ``override_settings`` and pytest-django's ``settings`` fixture
  send Django's ``setting_changed`` signal, which closes the old client; a ``SARK_SYNC`` that
  is not the object the client was built from (assigned without the signal) is noticed on the
  next call too;
- someone closed it.

The fast path is one read of a tuple and two comparisons, without a lock; building holds the
lock, so concurrent first calls build one client.
"""

from __future__ import annotations

import os
import threading
from typing import Any, NamedTuple

from django.conf import settings
from django.core.signals import setting_changed

from ...client import GatewayClient
from ._conf import client_options, raw_settings

__all__ = ["close_client", "get_client"]

_MISSING = object()


class _Built(NamedTuple):
    pid: int
    source: object  # the settings.SARK_SYNC object the client was built from
    client: GatewayClient


_lock = threading.Lock()
_built: _Built | None = None


def _source() -> object:
    return getattr(settings, "SARK_SYNC", _MISSING)


def get_client() -> GatewayClient:
    """The process's :class:`~sark_sync.GatewayClient`, configured by ``settings.SARK_SYNC``
    (each key falling back to the ``SARK_*`` environment).

    Thread-safe; built on the first call, never at import time. Raises
    :class:`~sark_sync.ConfigurationError` when the settings are missing or invalid (the
    ``sark_sync.E00x`` system checks report the same at ``manage.py check``).
    """
    global _built
    built, source = _built, _source()
    if built is not None and built.pid == os.getpid() and built.source is source \
            and not built.client.closed:
        return built.client
    with _lock:
        built, source, pid = _built, _source(), os.getpid()
        if built is not None and built.pid == pid and built.source is source \
                and not built.client.closed:
            return built.client
        client = GatewayClient(**client_options(raw_settings()))
        _built = _Built(pid, source, client)
    if built is not None and built.pid == pid:
        built.client.close()  # settings changed under it: nothing else will close it
    return client


def close_client() -> None:
    """Close the process's client, if one was built here; the next :func:`get_client` builds
    a new one. For tests' teardown and for a worker's shutdown hook."""
    global _built
    with _lock:
        built, _built = _built, None
    if built is not None and built.pid == os.getpid():
        built.client.close()


def _on_setting_changed(*, setting: str, **kwargs: Any) -> None:
    if setting == "SARK_SYNC":
        close_client()


def _after_fork_in_child() -> None:
    """In a forked child: forget the parent's client (not closed: the parent still uses it,
    and sark_sync already dropped its connections in the child) and replace the lock."""
    global _built, _lock
    _lock = threading.Lock()
    _built = None


setting_changed.connect(_on_setting_changed, weak=False,
                        dispatch_uid="sark_sync.contrib.django.close_client")
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
