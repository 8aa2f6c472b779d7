"""What the CLI's exit-code and idempotency tests share (their fixtures are offered by this
folder's conftest.py): one real LocalGateway whose servers
are of every kind a gateway holds (built-in tools, hosted stdio MCP servers, each at a
sensitivity a viewer clears and at one it does not), ``sark-sync`` run as a child process
against it, and a loopback HTTP server that answers one status to everything (an MCP URL
that refuses, denies or does not exist).

- ``kinds_gateway`` (module scope, :class:`KindsGateway`): the gateway, the users' tokens and
  the file of tickets the hosted ``ticket_server.py`` opens.
- ``sdk_gateway`` (module scope, realcomp tests only): a gateway hosting the official MCP
  SDK's stdio server as ``sdk``, with the same key and JWT secret, so that
  ``kinds_gateway.env(SARK_GATEWAY_URL=sdk_gateway.url)`` points the CLI at it.
- ``status_server`` (``Callable[[int], str]``): ``status_server(403)`` is the URL of a server
  answering 403 (a JSON error body) to every request; stopped and joined after the test.
- :func:`run_cli`: ``python -m sark_sync.cli ARGS`` in a child process, bounded.
"""

from __future__ import annotations

import http.server
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import pytest

from sark_sync.testing import Fault, LocalGateway

#: The repository's root: the child processes import this sark_sync.
ROOT = Path(__file__).resolve().parents[3]
#: Bound for one command.
WAIT = 30.0
API_KEY = "cli-kinds-key"
JWT_SECRET = "cli-kinds-secret"
TICKET_SERVER = Path(__file__).resolve().parent / "ticket_server.py"
DEMO_SERVER = [sys.executable, "-m", "sark_sync.testing.demo_server"]


@dataclass(frozen=True)
class KindsGateway:
    gateway: LocalGateway
    alice: str  # developer: clears low and medium
    bob: str  # viewer: clears low only
    tickets: Path  # what ticket_server.py's open_ticket appends to

    def env(self, **extra: str) -> dict[str, str]:
        """The child's environment: this gateway, its key and alice's token."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("SARK_")}
        env.update(PYTHONPATH=str(ROOT), SARK_GATEWAY_URL=self.gateway.url,
                   SARK_API_KEY=API_KEY, SARK_USER_TOKEN=self.alice)
        env.update(extra)
        return env

    def tickets_opened(self) -> list[str]:
        return self.tickets.read_text(encoding="utf-8").splitlines() \
            if self.tickets.exists() else []

    def slow(self, seconds: float) -> Fault:
        """Delay the built-in server's next invoke (removed by the caller)."""
        return self.gateway.add_fault(Fault(server="tools", delay=seconds))


def _counter(prefix: str) -> Callable[[dict[str, Any]], object]:
    opened: list[str] = []
    lock = threading.Lock()

    def create_ticket(parameters: dict[str, Any]) -> object:
        with lock:
            opened.append(str(parameters.get("title")))
            return {"ticket": f"{prefix}-{len(opened)}"}

    return create_ticket


@pytest.fixture(scope="module")
def kinds_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KindsGateway]:
    tickets = tmp_path_factory.mktemp("tickets") / "tickets.txt"
    env = {"PYTHONPATH": str(ROOT)}
    gateway = LocalGateway(api_keys=(API_KEY,), jwt_secret=JWT_SECRET, policy="builtin")
    gateway.add_server("tools", sensitivity_level="low")
    gateway.add_tool("tools", "create_ticket", _counter("T"),
                     input_schema={"type": "object", "properties": {"title": {"type": "string"}}})
    gateway.add_tool("tools", "echo", lambda p: str(p.get("text")))
    gateway.add_server("vault", sensitivity_level="medium")
    gateway.add_tool("vault", "read", lambda p: "secret", sensitivity_level="medium")
    gateway.add_stdio_server("stdio", DEMO_SERVER, env=env, sensitivity_level="low")
    gateway.add_stdio_server("stdio_vault", DEMO_SERVER, env=env, sensitivity_level="medium")
    # Crashed on purpose by one test, and never called again: a restart would start a process
    # during a later test, which the leak guard would see outlive it.
    gateway.add_stdio_server("stdio_crash", DEMO_SERVER, env=env, sensitivity_level="low")
    gateway.add_stdio_server("ticket_stdio", [sys.executable, str(TICKET_SERVER)],
                             env={**env, "TICKETS_FILE": str(tickets)}, sensitivity_level="low")
    with gateway.start():
        yield KindsGateway(
            gateway,
            alice=gateway.issue_token("alice", roles=("developer",), teams=("t",)),
            bob=gateway.issue_token("bob", roles=("viewer",), teams=("t",)),
            tickets=tickets)


@pytest.fixture(scope="module")
def sdk_gateway(mcp_sdk_server_command: list[str]) -> Iterator[LocalGateway]:
    """Apart from ``kinds_gateway``, whose tests must not need the tools venv."""
    gateway = LocalGateway(api_keys=(API_KEY,), jwt_secret=JWT_SECRET)
    gateway.add_stdio_server("sdk", mcp_sdk_server_command, sensitivity_level="low")
    with gateway.start():
        yield gateway


def run_cli(*argv: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sark_sync.cli", *argv], env=env,
                          capture_output=True, text=True, timeout=WAIT, check=False)


def json_error(done: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    """The error document a ``--json`` command printed: one line on standard error."""
    assert done.stderr.count("\n") == 1, done.stderr
    document: Any = json.loads(done.stderr)
    assert list(document) == ["error"]
    error: dict[str, Any] = document["error"]
    assert error["exit_code"] == done.returncode
    return error


class _StatusHandler(http.server.BaseHTTPRequestHandler):
    status = 500

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        body = json.dumps({"error": {"code": f"status_{self.status}",
                                     "message": f"answered {self.status}"}}).encode()
        self.send_response(self.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:  # http.server calls do_<METHOD>
        self._answer()

    def do_POST(self) -> None:
        self._answer()

    def do_DELETE(self) -> None:
        self._answer()

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the test reads the status, not the log."""


@pytest.fixture
def status_server() -> Iterator[Callable[[int], str]]:
    started: list[tuple[http.server.ThreadingHTTPServer, threading.Thread]] = []

    def start(status: int) -> str:
        handler = type("Handler", (_StatusHandler,), {"status": status})
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        server.daemon_threads = False
        thread = threading.Thread(target=server.serve_forever, name=f"status-server-{status}")
        thread.start()
        started.append((server, thread))
        return f"http://127.0.0.1:{server.server_address[1]}/mcp"

    yield start
    for server, thread in started:
        server.shutdown()
        server.server_close()
        thread.join(WAIT)
