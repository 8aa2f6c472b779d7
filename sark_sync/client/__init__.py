"""The client: :class:`GatewayClient` and the pipeline every call runs through."""
