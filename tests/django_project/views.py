"""Views of the test project: each calls a tool on behalf of the request's user."""

from __future__ import annotations

import os
from typing import Any

from django.http import HttpRequest, JsonResponse

import sark_sync
from sark_sync.contrib.django import get_client, invoke_tool


def echo(request: HttpRequest) -> JsonResponse:
    """``demo.echo`` with ``?text=``, for the request's user; answers what the tool returned,
    the process id (which worker served it) and the base URL of the client used."""
    result = invoke_tool(request, "demo", "echo", {"text": request.GET.get("text", "")})
    return JsonResponse({"echo": result.json(), "pid": os.getpid(),
                         "base_url": get_client().base_url})


def fail(request: HttpRequest, kind: str) -> JsonResponse:
    """Raise the sark_sync error named ``kind`` (e.g. ``AuthorizationDenied``), for the
    middleware; its message names a server, which must never reach the response."""
    error_type: Any = getattr(sark_sync, kind)
    extra = {"breaker": "secret-server"} if kind == "CircuitOpenError" else {}
    raise error_type("call to secret-server failed", request_id="req-123", retry_after=7.2,
                     **extra)


def token_from_header(request: HttpRequest) -> str | None:
    """A TOKEN_GETTER: the user's token from the ``X-User-Token`` header."""
    return request.headers.get("X-User-Token")



#: What :func:`record_audit` received (an AUDIT setting given by dotted path).
AUDITED: list[Any] = []


def record_audit(event: Any) -> None:
    """An audit sink given to SARK_SYNC["AUDIT"] by its dotted path."""
    AUDITED.append(event)
