"""Django integration: ``"sark_sync.contrib.django"`` in ``INSTALLED_APPS``.

- ``settings.SARK_SYNC``: one dict of the client's options (``BASE_URL``, ``API_KEY``,
  ``TIMEOUT``, ``RETRY``, ``BREAKER``, ``AUTHORIZER``, ``AUDIT``, ``LOCAL_SERVERS``,
  ``REMOTE_SERVERS`` ...), each falling back to the ``SARK_*`` environment, plus
  ``TOKEN_GETTER`` (how the end user's token is read from a request) and ``READINESS_TIMEOUT``;
- :func:`get_client`: the process's client, built on first use (never at import, so
  ``manage.py`` works without a gateway), rebuilt after ``fork()`` and when the setting changes
  (``override_settings`` in tests);
- system checks ``sark_sync.E001``..``E004`` for a missing or invalid setting;
- :class:`~sark_sync.contrib.django.middleware.GatewayErrorMiddleware` (403/429/502/503/504)
  and the :func:`~sark_sync.contrib.django.views.readiness` view.

A view calls tools on behalf of its user::

    from sark_sync.contrib.django import invoke_tool

    def echo(request):
        result = invoke_tool(request, "demo", "echo", {"text": "hi"})
        return JsonResponse(result.json())

See ``docs/integrations/django.md``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..._models import ToolResult
from ._accessor import close_client, get_client
from ._conf import bearer_token, raw_settings, token_getter

__all__ = ["bearer_token", "close_client", "get_client", "invoke_tool", "user_token"]


def user_token(request: Any) -> str | None:
    """The end user's token for ``request``, as ``SARK_SYNC["TOKEN_GETTER"]`` reads it
    (default :func:`bearer_token`: the request's ``Authorization: Bearer`` token)."""
    return token_getter(raw_settings())(request)


def invoke_tool(request: Any, server: str, tool: str,
                parameters: Mapping[str, Any] | None = None, **options: Any) -> ToolResult:
    """``get_client().invoke_tool(...)`` on behalf of ``request``'s user: their token (see
    :func:`user_token`) goes with the call, so the gateway's policy judges them, not the
    application. ``options`` as :meth:`~sark_sync.GatewayClient.invoke_tool`'s."""
    options.setdefault("user_token", user_token(request))
    return get_client().invoke_tool(server, tool, parameters, **options)
