"""The MCP servers a GatewayClient talks to directly: local ones over stdio, remote ones by URL.

``connect_local_server`` and ``connect_remote_server`` open a session, attach it to the
client's pools under its name (so ``invoke_tool(name, ...)`` reaches it through the pipeline:
deadline, policy, breaker, retries when safe, audit) and hand it to the caller, who may use
it directly too. The client ends every session it was given when it closes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Callable

from ..transports import LocalServer, RemoteServer, check_handler_options
from ._pipeline import Pipeline

__all__ = ["connect_local", "connect_remote"]


def connect_local(
    pipeline: Pipeline, command: list[str], *, env: Mapping[str, str] | None,
    cwd: str | None, name: str | None, inherit_env: bool, timeout: float,
    startup_timeout: float | None,
    on_notification: Callable[[str, Mapping[str, Any]], None] | None,
    on_log: Callable[[Any], None] | None = None,
    handlers: Mapping[str, Any] | None = None,
) -> LocalServer:
    """Start a local server over stdio (``transport_mode`` must allow stdio). ``handlers``:
    the handlers of the server's requests (``sampling``, ``elicitation``, ``roots``,
    ``handler_timeout``), as :class:`LocalServer` takes them."""
    options = check_handler_options(handlers or {}, where="connect_local_server")
    pipeline.require("stdio")
    return pipeline.state().local.connect(
        command, env=env, cwd=cwd, name=name, inherit_env=inherit_env, timeout=timeout,
        startup_timeout=startup_timeout, on_notification=on_notification, on_log=on_log,
        handlers=options)


def connect_remote(
    pipeline: Pipeline, url: str, *, name: str | None, headers: Mapping[str, str] | None,
    auth: Any, transport: str, timeout: float, protocol_version: str,
    on_notification: Callable[[str, Mapping[str, Any]], None] | None = None,
    on_log: Callable[[Any], None] | None = None,
    handlers: Mapping[str, Any] | None = None,
) -> RemoteServer:
    """Connect to a remote server (``transport_mode`` must allow http) within ``timeout``
    seconds, also its default per request; a failed connection leaves nothing open.
    ``handlers`` as :func:`connect_local`'s."""
    options = check_handler_options(handlers or {}, where="connect_remote_server")
    pipeline.require("http")
    server = RemoteServer(url, name=name, headers=headers, auth=auth, transport=transport,
                          timeout=timeout, protocol_version=protocol_version,
                          on_notification=on_notification, on_log=on_log, **options)
    try:
        server.connect()
    except BaseException:
        server.close()
        raise
    pipeline.state().remote.attach(server)
    return server
