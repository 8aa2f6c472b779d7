"""IBM ContextForge (``mcp-contextforge-gateway`` 1.1.0), an MCP gateway, as a test peer.

:class:`ContextForge` starts ``mcpgateway`` with the contextforge venv's interpreter
(``tools_venv``, CPython 3.12) on a listening socket of 127.0.0.1 port 0 that this process
binds and hands over (``--fd``: no port race), with SQLite in a folder of its own, waits for
``/health``, issues an admin JWT with ``python -m mcpgateway.utils.create_jwt_token``,
registers an MCP server over Streamable HTTP through the REST API (``POST /gateways``) and
bundles its tools into a virtual server (``POST /servers``), whose MCP endpoint
``/servers/{id}/mcp`` is what a client talks to. :meth:`ContextForge.stop` ends the whole
process group (uvicorn forks helper processes): SIGTERM, then SIGKILL.

Modes (``CONTEXTFORGE_MODES``), verified on the wire with curl against 1.1.0 (the MCP
endpoint of a virtual server whose gateway is the official SDK 2.3.0 server):

- ``stateless``, ContextForge's default (``USE_STATEFUL_SESSIONS=false``,
  ``JSON_RESPONSE_ENABLED=true``): ``initialize`` is answered ``200`` ``application/json``
  with protocol version 2025-11-25 and **no** ``mcp-session-id``; every request is served
  on its own; ``notifications/initialized`` gets ``202``; DELETE gets **405** (JSON-RPC
  error ``-32600`` "Method Not Allowed: Session termination not supported"); GET gets
  **405** (``allow: POST, DELETE``).
- ``stateful`` (``USE_STATEFUL_SESSIONS=true``): still JSON answers, but ``initialize``
  returns an ``mcp-session-id`` (32 hex digits) that every later response repeats; a request
  without it gets **400** "Bad Request: Missing session ID", an unknown id **404** "Session
  not found"; DELETE with the id gets **200** (body ``{"jsonrpc":"2.0","result":{}}``); GET
  with the id opens an SSE listening stream (``200`` headers at once, a ``: ping`` comment
  every 15 s), and a second GET on the same session gets **409** with ``retry-after: 1``.

In both: tool names are prefixed with the registered gateway's slug and ``-``
(``sdk-echo``), the upstream's annotations pass through, its ``structuredContent`` does not;
a missing or wrong bearer token gets **401** ``www-authenticate: Bearer`` with
``{"detail": "Authentication required for MCP endpoints"}`` or ``"Invalid authentication
credentials"``; answers carry ``deprecation``/``sunset`` headers (the ``/servers/{id}/mcp``
route is "legacy", its ``/v1`` successor is not served by 1.1.0: 404).

Settings: the secrets are random per instance (ContextForge refuses weak ones), passwords
are at least 12 characters, ``MCPGATEWAY_ADMIN_API_ENABLED=true`` (the REST API),
``SSRF_ALLOW_LOCALHOST=true`` (the upstream is on 127.0.0.1), ``CACHE_TYPE=database`` (no
Redis), the UI off, and rate limiting off (100 MCP requests a minute per client would make
the tests depend on their own pace).
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["CONTEXTFORGE_MODES", "ContextForge", "ContextForgeError", "ContextForgePeer"]

#: Each mode's settings on top of ``BASE_SETTINGS``.
CONTEXTFORGE_MODES: dict[str, dict[str, str]] = {
    "stateless": {},
    "stateful": {"USE_STATEFUL_SESSIONS": "true"},
}
#: The settings of every mode (the secrets are added per instance).
BASE_SETTINGS = {
    "MCPGATEWAY_ADMIN_API_ENABLED": "true",
    "MCPGATEWAY_UI_ENABLED": "false",
    "SSRF_ALLOW_LOCALHOST": "true",
    "CACHE_TYPE": "database",
    "RATE_LIMITING_ENABLED": "false",
    "PLATFORM_ADMIN_EMAIL": "admin@example.com",
}
#: The only variables of this process that the gateway sees (it reads hundreds of settings
#: from the environment: nothing of a developer's shell may change it).
PASSED_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "no_proxy", "NO_PROXY")
#: Bound for ``/health`` to answer 200: about 6-11 s on an idle machine, 30-55 s seen on a
#: busy one (its database migrations run at start).
START_TIMEOUT = 120.0
#: Grace period for the process group to exit after SIGTERM (it takes about 0.3 s).
EXIT_TIMEOUT = 10.0
#: Bound for one REST request, and for the token command.
REQUEST_TIMEOUT = 30.0
#: Lines of the gateway's log quoted in an error.
LOG_TAIL_LINES = 40


class ContextForgeError(RuntimeError):
    """ContextForge did not start, or refused a request; the message quotes why."""


@dataclass(frozen=True)
class ContextForgePeer:
    """A running ContextForge with one registered MCP server: ``url`` is the virtual
    server's MCP endpoint, ``token`` an admin JWT it accepts, ``tools`` the tool names it
    lists there (prefixed with ``gateway_name`` and ``-``)."""

    mode: str
    base_url: str
    url: str
    token: str
    gateway_name: str
    server_id: str
    tools: frozenset[str]

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


class ContextForge:
    """One ``mcpgateway`` process in a ``mode`` of ``CONTEXTFORGE_MODES``, run with the
    contextforge venv's ``python``, its database and log in ``workdir``."""

    def __init__(self, mode: str, python: Path, workdir: Path) -> None:
        if mode not in CONTEXTFORGE_MODES:
            raise ValueError(f"unknown mode {mode!r}; one of {sorted(CONTEXTFORGE_MODES)}")
        self.mode = mode
        self.python = python
        self.workdir = workdir
        self.log_path = workdir / "mcpgateway.log"
        self.env = {k: v for k, v in os.environ.items() if k in PASSED_ENV}
        self.env.update(BASE_SETTINGS, **CONTEXTFORGE_MODES[mode])
        self.env.update(
            JWT_SECRET_KEY=secrets.token_urlsafe(48),
            AUTH_ENCRYPTION_SECRET=secrets.token_urlsafe(48),
            # >= 12 characters with upper and lower case, a digit and a symbol: no warning.
            PLATFORM_ADMIN_PASSWORD="Adm1n-" + secrets.token_urlsafe(12),
            BASIC_AUTH_PASSWORD="Bas1c-" + secrets.token_urlsafe(12),
            DEFAULT_USER_PASSWORD="Us3r-" + secrets.token_urlsafe(12),
            DATABASE_URL=f"sqlite:///{workdir / 'mcp.db'}",
        )
        self.proc: subprocess.Popen[bytes] | None = None
        self.base_url = ""
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def start(self, timeout: float = START_TIMEOUT) -> None:
        """Start it and wait until ``/health`` answers 200; raise ``ContextForgeError``
        (quoting its log) after ``timeout`` seconds or if it exits first."""
        listener = socket.create_server(("127.0.0.1", 0))
        with listener:
            port = listener.getsockname()[1]
            with open(self.log_path, "wb") as log:
                # Its own session: the helpers uvicorn forks are stopped with it (killpg).
                self.proc = subprocess.Popen(
                    [str(self.python.with_name("mcpgateway")), "--fd", str(listener.fileno())],
                    stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                    env=self.env, cwd=self.workdir, pass_fds=(listener.fileno(),),
                    start_new_session=True)
        self.base_url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + timeout
        pause = threading.Event()  # never set: each wait lasts its timeout
        while True:
            status, _ = self._request("GET", "/health", token=None, bound=deadline)
            if status == 200:
                return
            if self.proc.poll() is not None:
                raise ContextForgeError(f"ContextForge exited ({self.proc.returncode}) before "
                                        f"it served /health; its log:\n{self.log()}")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ContextForgeError(f"ContextForge did not serve /health within "
                                        f"{timeout:g}s; its log:\n{self.log()}")
            pause.wait(min(0.2, remaining))

    def issue_token(self, minutes: int = 240) -> str:
        """An admin JWT for the platform admin, from its own ``create_jwt_token`` CLI."""
        done = subprocess.run(
            [str(self.python), "-m", "mcpgateway.utils.create_jwt_token", "--username",
             self.env["PLATFORM_ADMIN_EMAIL"], "--admin", "--exp", str(minutes)],
            stdin=subprocess.DEVNULL, capture_output=True, env=self.env, cwd=self.workdir,
            timeout=REQUEST_TIMEOUT, check=False)
        lines = done.stdout.decode("utf-8", "replace").split()
        if done.returncode != 0 or not lines or lines[-1].count(".") != 2:
            raise ContextForgeError(
                f"create_jwt_token exited {done.returncode} with no token; stderr:\n"
                f"{done.stderr.decode('utf-8', 'replace')[-4000:]}")
        return lines[-1]

    def register(self, upstream_url: str, token: str, name: str = "sdk") -> ContextForgePeer:
        """Register the MCP server at ``upstream_url`` (Streamable HTTP) as gateway ``name``,
        put all its tools in a new virtual server, and return the peer to use."""
        gateway = self.call("POST", "/gateways", token,
                            {"name": name, "url": upstream_url, "transport": "STREAMABLEHTTP"})
        tools = [tool for tool in self.call("GET", "/tools", token)
                 if tool.get("gatewayId") == gateway["id"]]
        if not tools:
            raise ContextForgeError(f"gateway {name!r} registered with no tools: {gateway!r}")
        server = self.call("POST", "/servers", token, {
            "server": {"name": f"sark-{self.mode}",
                       "associated_tools": [tool["id"] for tool in tools]},
            "visibility": "public"})
        return ContextForgePeer(
            mode=self.mode, base_url=self.base_url,
            url=f"{self.base_url}/servers/{server['id']}/mcp", token=token,
            gateway_name=name, server_id=server["id"],
            tools=frozenset(tool["name"] for tool in tools))

    def warm_up(self, peer: ContextForgePeer) -> None:
        """One MCP session through ``peer.url`` as a plain client would (initialize, tools/list,
        a ``tools/call`` of the echo tool, DELETE when it keeps sessions): a gateway that
        cannot serve fails here, and whatever it starts lazily exists before the tests."""
        path = peer.url[len(self.base_url):]
        session: dict[str, str] = {}

        def post(message: dict[str, Any]) -> Any:
            status, answer, sid = self._mcp("POST", path, peer.token, session, message)
            if status not in (200, 202):
                raise ContextForgeError(f"{message.get('method')} answered {status}: "
                                        f"{answer!r}; its log:\n{self.log()}")
            if sid and not session:
                session["Mcp-Session-Id"] = sid
            return answer

        post({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25", "capabilities": {},
            "clientInfo": {"name": "sark-test-warm-up", "version": "0"}}})
        session["MCP-Protocol-Version"] = "2025-11-25"
        post({"jsonrpc": "2.0", "method": "notifications/initialized"})
        listed = post({"jsonrpc": "2.0", "id": 2, "method": "tools/list"})
        names = {tool["name"] for tool in listed["result"]["tools"]}
        if names != peer.tools:
            raise ContextForgeError(f"tools/list gave {sorted(names)}, not {sorted(peer.tools)}")
        echoed = post({"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {
            "name": f"{peer.gateway_name}-echo", "arguments": {"text": "warm"}}})
        if echoed.get("result", {}).get("content") != [{"type": "text", "text": "warm"}]:
            raise ContextForgeError(f"the echo tool answered {echoed!r}")
        if "Mcp-Session-Id" in session:
            self._mcp("DELETE", path, peer.token, session, None)

    def _mcp(self, method: str, path: str, token: str, headers: dict[str, str],
             message: dict[str, Any] | None) -> tuple[int | None, Any, str | None]:
        request = urllib.request.Request(
            self.base_url + path, method=method,
            data=None if message is None else json.dumps(message).encode(),
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json",
                     "Accept": "application/json, text/event-stream", **headers})
        try:
            with self._opener.open(request, timeout=REQUEST_TIMEOUT) as answer:
                return (answer.status, _decode(answer.read()),
                        answer.headers.get("mcp-session-id"))
        except urllib.error.HTTPError as error:
            with error:
                return error.code, _decode(error.read()), None
        except OSError as exc:
            return None, str(exc), None

    def call(self, method: str, path: str, token: str | None, body: Any = None) -> Any:
        """A REST request that must succeed (2xx): its decoded JSON answer."""
        status, answer = self._request(method, path, token=token, body=body)
        if status is None or not 200 <= status < 300:
            raise ContextForgeError(f"{method} {path} answered {status}: {answer!r}")
        return answer

    def _request(self, method: str, path: str, *, token: str | None, body: Any = None,
                 bound: float | None = None) -> tuple[int | None, Any]:
        timeout = REQUEST_TIMEOUT
        if bound is not None:
            timeout = max(0.1, min(timeout, bound - time.monotonic()))
        request = urllib.request.Request(
            self.base_url + path, method=method,
            data=None if body is None else json.dumps(body).encode())
        if body is not None:
            request.add_header("Content-Type", "application/json")
        if token is not None:
            request.add_header("Authorization", f"Bearer {token}")
        try:
            with self._opener.open(request, timeout=timeout) as answer:
                return answer.status, _decode(answer.read())
        except urllib.error.HTTPError as error:
            with error:
                return error.code, _decode(error.read())
        except OSError as exc:  # not serving yet, or gone
            return None, str(exc)

    def log(self) -> str:
        """The last lines of its log."""
        try:
            lines = self.log_path.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError as exc:
            return f"(no log: {exc})"
        return "\n".join(lines[-LOG_TAIL_LINES:])

    def stop(self) -> None:
        """SIGTERM to its process group, SIGKILL after ``EXIT_TIMEOUT``; returns once every
        member is gone. Idempotent."""
        proc = self.proc
        if proc is None:
            return
        _signal_group(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + EXIT_TIMEOUT
        pause = threading.Event()  # never set: each wait lasts its timeout
        try:
            proc.wait(EXIT_TIMEOUT)
        except subprocess.TimeoutExpired:
            pass
        while _group_alive(proc.pid) and time.monotonic() < deadline:
            pause.wait(min(0.05, max(0.0, deadline - time.monotonic())))
        if _group_alive(proc.pid) or proc.poll() is None:
            _signal_group(proc.pid, signal.SIGKILL)
            proc.wait()
            kill_deadline = time.monotonic() + EXIT_TIMEOUT
            while _group_alive(proc.pid) and time.monotonic() < kill_deadline:
                pause.wait(min(0.05, max(0.0, kill_deadline - time.monotonic())))


def _decode(data: bytes) -> Any:
    try:
        return json.loads(data) if data else None
    except ValueError:
        return data.decode("utf-8", "replace")


def _signal_group(pgid: int, signum: int) -> None:
    try:
        os.killpg(pgid, signum)
    except ProcessLookupError:
        pass


def _group_alive(pgid: int) -> bool:
    """Whether a process of the group is still there (zombies of init's count until reaped:
    they are gone within milliseconds)."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
