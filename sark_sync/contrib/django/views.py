"""``readiness``: a probe view that answers 200 while the gateway answers its health check.

Route it (``path("ready/", readiness)``) and point the orchestrator's readiness probe at it: a
pod whose gateway is down, or whose settings are wrong, is taken out of rotation instead of
failing every request. The health request is bounded by ``SARK_SYNC["READINESS_TIMEOUT"]``
(default 2 s, retries included), so the probe never hangs. The body says only ``ready`` or
``unavailable`` and the error's type: the details are in the application's log.
"""

from __future__ import annotations

import logging

from django.http import HttpRequest, JsonResponse

from ..._config import Timeouts
from ..._exceptions import GatewayError
from ._accessor import get_client
from ._conf import raw_settings, readiness_timeout

__all__ = ["readiness"]

logger = logging.getLogger(__name__)


def readiness(request: HttpRequest) -> JsonResponse:
    """200 ``{"status": "ready"}`` when the gateway reports itself healthy, else 503
    ``{"status": "unavailable", "reason": ...}``."""
    try:
        seconds = readiness_timeout(raw_settings())
        health = get_client().health(
            timeout=Timeouts(connect=seconds, read=seconds, deadline=seconds))
    except GatewayError as exc:
        logger.warning("readiness: the gateway is not ready: %r", exc)
        return JsonResponse({"status": "unavailable", "reason": type(exc).__name__}, status=503)
    if not health.healthy:
        return JsonResponse({"status": "unavailable", "reason": "unhealthy"}, status=503)
    return JsonResponse({"status": "ready"})
