"""Fixtures for the official SDK server that uses the client side of MCP (mcp_client_server.py).

A pytest plugin loaded by tests/conftest.py (after fixtures.py), so every test can request them:

- ``mcp_client_stdio_command`` (``list[str]``): the command that serves mcp_client_server.py over
  stdio, every feature on. Session-scoped: copy it before changing it.
- ``mcp_client_tools_only_command`` (``list[str]``): the same with ``--tools-only`` (the server
  declares the ``tools`` capability and nothing else).
- ``mcp_client_http_server`` (``McpClientHttpServer``): one mcp_client_server.py over Streamable
  HTTP (stateful, SSE responses; 127.0.0.1 port 0) for the whole session; ``.url`` is its
  ``/mcp`` endpoint. The server keeps what a test can observe per connection (log level,
  subscriptions, roots changes) or per argument (``slow(tag)``), so tests share it; a tool a
  test adds with ``add_tool(name)`` stays for the session: use a name no other test uses.
- ``mcp_client_tools_only_http_server`` (``McpClientHttpServer``): the same with ``--tools-only``.
- ``mcp_client_peer`` (``ClientPeer``): parametrized ``stdio``, ``http-2025`` and ``http-2026``:
  the server to reach and how (the command, or the URL and the protocol version to ask for).
  Pick some with ``@pytest.mark.parametrize("mcp_client_peer", ["stdio"], indirect=True)``.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from realcomp.fixtures import SCRUBBED_ENV, McpHttpServer

#: The official SDK server that asks the client, logs, serves resources and prompts.
MCP_CLIENT_SERVER = Path(__file__).resolve().with_name("mcp_client_server.py")
#: The ways ``mcp_client_peer`` reaches it: its kind and the protocol version asked for.
CLIENT_PEERS = {"stdio": None, "http-2025": "2025-11-25", "http-2026": "2026-07-28"}


@dataclass(frozen=True)
class ClientPeer:
    """How to reach mcp_client_server.py: over stdio (``command``) or Streamable HTTP (``url``)
    at ``version`` (a handshake version, or 2026-07-28: no session, input_required results)."""

    kind: str
    command: tuple[str, ...]
    url: str = ""
    version: str | None = None

    @property
    def modern(self) -> bool:
        """Whether this peer is spoken to at 2026-07-28 (MRTR: no server-to-client requests,
        no notifications from the client, no logging/setLevel, no resources/subscribe)."""
        return self.version == "2026-07-28"


class McpClientHttpServer(McpHttpServer):
    """One running ``mcp_client_server.py`` over Streamable HTTP: its ``url``, ``proc``, log."""

    what = "the MCP client-features server"

    def __init__(self, options: list[str], python: Path, log_path: Path) -> None:
        self.mode = "stateful"
        self.options = options
        self.log_path = log_path
        env = {k: v for k, v in os.environ.items() if k not in SCRUBBED_ENV}
        with open(log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [str(python), str(MCP_CLIENT_SERVER), "--transport", "streamable-http",
                 *options],
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log, env=env)
        self.url = ""


@pytest.fixture(scope="session")
def mcp_client_stdio_command(tools_python: Path) -> list[str]:
    """The command that serves tests/realcomp/mcp_client_server.py over stdio."""
    return [str(tools_python), str(MCP_CLIENT_SERVER)]


@pytest.fixture(scope="session")
def mcp_client_tools_only_command(tools_python: Path) -> list[str]:
    """The command that serves mcp_client_server.py over stdio with ``--tools-only``."""
    return [str(tools_python), str(MCP_CLIENT_SERVER), "--tools-only"]


def _serve(options: list[str], python: Path, folder: Path) -> Iterator[McpClientHttpServer]:
    with McpClientHttpServer(options, python, folder / "mcp_client_server.log") as server:
        yield server


@pytest.fixture(scope="session")
def mcp_client_http_server(tools_python: Path, tmp_path_factory: pytest.TempPathFactory
                           ) -> Iterator[McpClientHttpServer]:
    """mcp_client_server.py over Streamable HTTP, every feature on; one for the session."""
    yield from _serve([], tools_python, tmp_path_factory.mktemp("mcp_client_server"))


@pytest.fixture(scope="session")
def mcp_client_tools_only_http_server(tools_python: Path,
                                      tmp_path_factory: pytest.TempPathFactory
                                      ) -> Iterator[McpClientHttpServer]:
    """mcp_client_server.py over Streamable HTTP with ``--tools-only``; one for the session."""
    yield from _serve(["--tools-only"], tools_python,
                      tmp_path_factory.mktemp("mcp_client_tools_only"))


@pytest.fixture(params=list(CLIENT_PEERS))
def mcp_client_peer(request: pytest.FixtureRequest, mcp_client_stdio_command: list[str],
                    mcp_client_http_server: McpClientHttpServer) -> ClientPeer:
    """The server over stdio, over HTTP at 2025-11-25, over HTTP at 2026-07-28. (The HTTP
    server is a session fixture requested here even for ``stdio``: started lazily, within a
    test, it would count as that test's leak.)"""
    kind = request.param
    if kind == "stdio":
        return ClientPeer(kind, tuple(mcp_client_stdio_command))
    return ClientPeer(kind, tuple(mcp_client_stdio_command), mcp_client_http_server.url,
                      CLIENT_PEERS[kind])
