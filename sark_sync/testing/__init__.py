"""Testing helpers for sark_sync: an embedded SARK gateway to test clients against.

:class:`LocalGateway` serves the SARK Gateway API v1 on a loopback port from a
background thread, records every request, deduplicates ``Idempotency-Key``s, streams events
(``GET /api/v1/events``: what it does, plus :meth:`LocalGateway.publish_event`) and injects
scripted :class:`Fault` s. Standard library only, so it can run anywhere the client runs::

    from sark_sync.testing import Fault, LocalGateway

    with LocalGateway(api_keys=("test-key",)) as gw:
        gw.add_server("demo")

        @gw.tool("demo")
        def echo(parameters):
            return parameters

        gw.add_fault(Fault(status=503, retry_after=1))   # the next invoke answers 503
        gw.add_fault(Fault(path="/api/v1/events", drop_after_events=10))  # cut a stream
        ...                                               # point a client at gw.url

:class:`MockTransport` answers a client's requests with a function instead
(``GatewayClient(transport=MockTransport(handler))``): the client's pipeline runs unchanged,
without a socket.

``LocalGateway(policy="builtin")`` enforces the shipped policy's rules on every invoke
(:class:`BuiltinPolicy`, also usable as a client's ``authorizer``); ``policy=<OPA URL>`` asks
an OPA server instead.

The pytest plugin (:mod:`.pytest_plugin`, installed as the ``pytest11`` entry point
``sark_sync``) gives each test its own gateway and client: the fixtures ``sark_gateway``,
``sark_client``, ``sark_settings``, ``sark_flask_config`` and ``sark_django_settings``.
"""

from __future__ import annotations

from ._mock import MockResponse, MockTransport
from .gateway._faults import Fault
from .gateway._gateway import LocalGateway
from .gateway._recording import RecordedHeaders, RecordedRequest
from .gateway._tool_calls import ToolFailure, ToolFunction
from .policy._builtin_policy import BuiltinPolicy

__all__ = [
    "BuiltinPolicy",
    "Fault",
    "LocalGateway",
    "MockResponse",
    "MockTransport",
    "RecordedHeaders",
    "RecordedRequest",
    "ToolFailure",
    "ToolFunction",
]
