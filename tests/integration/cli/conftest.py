"""The fixtures of the CLI tests that need servers of every kind: see :mod:`cli_kinds`."""

from cli_kinds import kinds_gateway, sdk_gateway, status_server

__all__ = ["kinds_gateway", "sdk_gateway", "status_server"]
