"""Sessions with the official server that uses the client side of MCP
(tests/realcomp/mcp_client_server.py), opened the same way whatever the ``mcp_client_peer``:
a :class:`LocalServer` over stdio, a :class:`RemoteServer` over Streamable HTTP at the peer's
protocol version. Used by tests/integration/e2e/test_realcomp_mcp_client_*.py.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Union

from realcomp.client_fixtures import ClientPeer

from sark_sync.transports import LocalServer, RemoteServer

#: Bound of one request to the peer (it answers in milliseconds; slack for a busy CI).
CALL_TIMEOUT = 20.0
#: The name every session gives the peer (so its log records go to ``sark_sync.mcp.peer``).
NAME = "peer"

Session = Union[LocalServer, RemoteServer]


def session(peer: ClientPeer, **options: Any) -> Session:
    """A session with ``peer`` (not started): ``with session(peer, sampling=...) as server``."""
    options.setdefault("name", NAME)
    options.setdefault("timeout", CALL_TIMEOUT)
    if peer.kind == "stdio":
        return LocalServer(list(peer.command), **options)
    return RemoteServer(peer.url, protocol_version=peer.version, **options)


def server_options(peer: ClientPeer, **options: Any) -> dict[str, Any]:
    """The per-server option dict of ``GatewayClient(local_servers=...)`` (stdio) or
    ``GatewayClient(remote_servers=...)`` (HTTP) for ``peer``."""
    if peer.kind == "stdio":
        return dict(options, command=list(peer.command))
    return dict(options, url=peer.url, protocol_version=peer.version)


def servers_argument(peer: ClientPeer) -> str:
    """``"local_servers"`` or ``"remote_servers"``: where ``peer`` goes in GatewayClient."""
    return "local_servers" if peer.kind == "stdio" else "remote_servers"


class Recorder:
    """Collects what callbacks receive, from any thread; ``wait(n)`` for the first n."""

    def __init__(self) -> None:
        self.items: list[Any] = []
        self._changed = threading.Condition()

    def __call__(self, *args: Any) -> None:
        with self._changed:
            self.items.append(args[0] if len(args) == 1 else args)
            self._changed.notify_all()

    def wait(self, count: int, timeout: float = CALL_TIMEOUT) -> list[Any]:
        with self._changed:
            if not self._changed.wait_for(lambda: len(self.items) >= count, timeout):
                raise AssertionError(f"{len(self.items)} of {count} items within {timeout}s: "
                                     f"{self.items!r}")
            return list(self.items)


@contextmanager
def released(event: threading.Event) -> Iterator[threading.Event]:
    """``event``, set when the block ends: a handler blocked on it never outlives a test."""
    try:
        yield event
    finally:
        event.set()
