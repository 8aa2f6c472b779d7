"""``GatewayErrorMiddleware``: a tool call that failed answers the end user with the right
HTTP status, not a 500 page.

Add ``"sark_sync.contrib.django.middleware.GatewayErrorMiddleware"`` to ``MIDDLEWARE``. A
:class:`~sark_sync.GatewayError` that a view lets through becomes, by the mapping shared with
the Flask extension (:mod:`sark_sync.contrib._http_errors`), a JSON response: 403 for a policy
denial, 429 for a rate limit, 503 for an unavailable gateway or an open breaker (both with
``Retry-After`` when known), 504 for a timeout and 502 for any other failure upstream. The body
is ``{"error": {"code", "message", "request_id"}}``: a fixed message per status and the
gateway's request id, never the exception's text (which names internal servers and tools).

The application's own mistakes (an invalid setting, a closed client) are not mapped: Django
answers them as any bug, with a 500 and the traceback in its log.
"""

from __future__ import annotations

import logging
from typing import Any, Callable

from django.http import HttpRequest, HttpResponse, JsonResponse

from .._http_errors import error_response

__all__ = ["GatewayErrorMiddleware"]

logger = logging.getLogger(__name__)


class GatewayErrorMiddleware:
    """Django middleware (new style) turning GatewayErrors raised in views into responses."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> Any:
        """The response for a mapped GatewayError, else None (Django's handling goes on)."""
        answer = error_response(exception)
        if answer is None:
            return None
        # The error's type and context (never a secret) go to the log, not to the user.
        logger.warning("%s %s answered %s: %r", request.method, request.path, answer.status,
                       exception)
        response = JsonResponse(answer.body, status=answer.status)
        for name, value in answer.headers.items():
            response[name] = value
        return response
