"""The pytest plugin of sark_sync: an embedded gateway and a client per test, and the settings
that point the Django and Flask integrations at that gateway.

Installed with sark_sync (entry point ``pytest11``, name ``sark_sync``), so a project's tests
only ask for the fixtures; ``-p no:sark_sync`` turns it off. Loading it defines fixtures and
nothing else: no hook, no option, no thread, no socket and no framework import, so a test
suite that never asks for a fixture runs exactly as before. A fixture starts what it needs when
a test asks for it, and stops it after that test:

- ``sark_gateway``: a started :class:`LocalGateway` on 127.0.0.1, a free port, fresh for every
  test (no server yet: the test adds its servers, tools and faults); stopped after the test.
  Its constructor arguments come from ``sark_gateway_options``, a fixture to override.
- ``sark_client``: a :class:`GatewayClient` of ``sark_gateway`` with its API key and fast
  retries (:data:`FAST_RETRY`), closed after the test (before the gateway stops).
- ``sark_settings``: ``{"BASE_URL", "API_KEY", "RETRY"}`` for ``sark_gateway``, in the shape of
  Django's ``SARK_SYNC`` setting, e.g. ``override_settings(SARK_SYNC=sark_settings)``.
- ``sark_django_settings``: the same, applied to Django's settings for the test
  (``override_settings``; Django is imported only by this fixture).
- ``sark_flask_config``: the same as ``SARK_SYNC_*`` keys, for ``app.config.update(...)`` or an
  app factory's config; a Flask app built before picks them up at its next use.

A project that tests with its own gateway or key overrides ``sark_gateway_options``::

    @pytest.fixture
    def sark_gateway_options():
        return {"api_keys": ["my-key"], "policy": "builtin"}
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from .._config import RetryPolicy
from ..client import GatewayClient
from .gateway._gateway import LocalGateway

__all__ = ["API_KEY", "FAST_RETRY", "FAST_RETRY_FIELDS"]

#: The API key the fixtures' gateway accepts (unless ``sark_gateway_options`` says otherwise).
API_KEY = "test-key"
#: The retry policy of the fixtures' clients, as fields: a test of a retried fault takes
#: milliseconds, not the seconds of the default backoff.
FAST_RETRY_FIELDS: dict[str, Any] = {"attempts": 3, "backoff_base": 0.01, "backoff_max": 0.05}
#: :data:`FAST_RETRY_FIELDS` as a policy.
FAST_RETRY = RetryPolicy(**FAST_RETRY_FIELDS)


@pytest.fixture
def sark_gateway_options() -> dict[str, Any]:
    """Keyword arguments of the test's :class:`LocalGateway`; override it to change them
    (``api_keys``, ``policy``, ``jwt_secret``, ``require_user_token`` ...). The first of its
    ``api_keys`` is the key of ``sark_client`` and ``sark_settings``."""
    return {"api_keys": (API_KEY,)}


@pytest.fixture
def sark_gateway(sark_gateway_options: dict[str, Any]) -> Iterator[LocalGateway]:
    """A started :class:`LocalGateway` for this test alone, stopped after it."""
    with LocalGateway(**sark_gateway_options) as gateway:
        yield gateway


@pytest.fixture
def sark_settings(sark_gateway: LocalGateway,
                  sark_gateway_options: dict[str, Any]) -> dict[str, Any]:
    """``sark_gateway`` as the integrations' settings: ``BASE_URL``, ``API_KEY`` and a fast
    ``RETRY`` (a fresh dict per test, safe to change)."""
    return {"BASE_URL": sark_gateway.url, "API_KEY": _api_key(sark_gateway_options),
            "RETRY": dict(FAST_RETRY_FIELDS)}


@pytest.fixture
def sark_client(sark_gateway: LocalGateway,
                sark_gateway_options: dict[str, Any]) -> Iterator[GatewayClient]:
    """A client of ``sark_gateway`` (its API key, :data:`FAST_RETRY`), closed after the test."""
    with GatewayClient(sark_gateway.url, api_key=_api_key(sark_gateway_options),
                       retry=FAST_RETRY) as client:
        yield client


@pytest.fixture
def sark_flask_config(sark_settings: dict[str, Any]) -> dict[str, Any]:
    """``sark_settings`` as Flask config keys (``SARK_SYNC_BASE_URL`` ...)."""
    return {f"SARK_SYNC_{key}": value for key, value in sark_settings.items()}


@pytest.fixture
def sark_django_settings(sark_settings: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """``settings.SARK_SYNC = sark_settings`` for the test (``override_settings``, so
    ``sark_sync.contrib.django.get_client()`` builds a client of this test's gateway)."""
    # loaded on demand: only a Django project's tests ask for this fixture
    from django.test import override_settings

    with override_settings(SARK_SYNC=sark_settings):
        yield sark_settings


def _api_key(options: dict[str, Any]) -> str | None:
    keys = options.get("api_keys", (API_KEY,))
    keys = [keys] if isinstance(keys, str) else list(keys)
    return keys[0] if keys else None
