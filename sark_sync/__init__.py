"""sark_sync: blocking, thread-safe and fork-safe MCP tool calls through the SARK gateway.

For Django and Flask views, Celery tasks and scripts that cannot run an event loop::

    import sark_sync

    with sark_sync.GatewayClient("https://gateway.internal", api_key="...") as client:
        result = client.invoke_tool("postgres-mcp", "execute_query", {"query": "SELECT 1"})

Every wait is bounded by a per-call deadline; failures raise one exception tree rooted in
:class:`GatewayError`. The names below are the public API; modules starting with ``_`` are not.
"""


import logging

from .__version__ import __version__
from ._config import BreakerPolicy, RestartPolicy, RetryPolicy, Timeouts
from ._exceptions import (
    APIError,
    AuthenticationError,
    AuthorizationDenied,
    AuthorizationUnavailable,
    BadRequestError,
    CallCancelled,
    CapabilityNotSupported,
    CircuitOpenError,
    ClientClosedError,
    ConfigurationError,
    ConnectionFailed,
    DeadlineExceeded,
    GatewayError,
    IdempotencyConflictError,
    NotFoundError,
    PayloadTooLargeError,
    ProcessExitedError,
    ProcessStartError,
    ProtocolError,
    RateLimitError,
    RPCError,
    ServerError,
    ServiceUnavailableError,
    SessionExpiredError,
    ToolExecutionError,
    TransportError,
    TransportNotAvailableError,
    TransportTimeout,
    UpstreamError,
    UpstreamTimeoutError,
    ValidationError,
)
from ._mcp_models import (
    Completion,
    Prompt,
    PromptArgument,
    PromptMessage,
    PromptResult,
    Resource,
    ResourceContents,
    ResourceResult,
    ResourceTemplate,
)
from ._mcp_requests import (
    ElicitationRequest,
    ElicitationResult,
    Root,
    RootsRequest,
    SamplingMessage,
    SamplingRequest,
    SamplingResult,
)
from ._models import (
    Event,
    Health,
    Principal,
    ServerInfo,
    ToolAnnotations,
    ToolCall,
    ToolInfo,
    ToolResult,
)
from .client import GatewayClient
from .governance import (
    AuditEvent,
    Auditor,
    AuthorizationInput,
    Decision,
    OPAAuthorizer,
    SarkAuthorizer,
)
from .resilience import Breaker, CancelToken
from .transports import EventStream, LocalServer, LogMessage, RemoteServer

__all__ = [
    "APIError",
    "AuditEvent",
    "Auditor",
    "AuthenticationError",
    "AuthorizationDenied",
    "AuthorizationInput",
    "AuthorizationUnavailable",
    "BadRequestError",
    "Breaker",
    "BreakerPolicy",
    "CallCancelled",
    "CancelToken",
    "CapabilityNotSupported",
    "CircuitOpenError",
    "ClientClosedError",
    "Completion",
    "ConfigurationError",
    "ConnectionFailed",
    "DeadlineExceeded",
    "Decision",
    "ElicitationRequest",
    "ElicitationResult",
    "Event",
    "EventStream",
    "GatewayClient",
    "GatewayError",
    "Health",
    "IdempotencyConflictError",
    "LocalServer",
    "LogMessage",
    "NotFoundError",
    "OPAAuthorizer",
    "PayloadTooLargeError",
    "Principal",
    "ProcessExitedError",
    "ProcessStartError",
    "Prompt",
    "PromptArgument",
    "PromptMessage",
    "PromptResult",
    "ProtocolError",
    "RPCError",
    "RateLimitError",
    "RemoteServer",
    "Resource",
    "ResourceContents",
    "ResourceResult",
    "ResourceTemplate",
    "RestartPolicy",
    "RetryPolicy",
    "Root",
    "RootsRequest",
    "SamplingMessage",
    "SamplingRequest",
    "SamplingResult",
    "SarkAuthorizer",
    "ServerError",
    "ServerInfo",
    "ServiceUnavailableError",
    "SessionExpiredError",
    "Timeouts",
    "ToolAnnotations",
    "ToolCall",
    "ToolExecutionError",
    "ToolInfo",
    "ToolResult",
    "TransportError",
    "TransportNotAvailableError",
    "TransportTimeout",
    "UpstreamError",
    "UpstreamTimeoutError",
    "ValidationError",
    "__version__",
]

logging.getLogger(__name__).addHandler(logging.NullHandler())
