"""The client: :class:`GatewayClient` and the pipeline every call runs through (see
``docs/ARCHITECTURE.md``)."""

from ._client import GatewayClient

__all__ = ["GatewayClient"]
