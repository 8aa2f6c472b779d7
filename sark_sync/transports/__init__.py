"""Transports: how a call reaches the gateway (HTTP now; SSE and stdio follow the same shape)."""
