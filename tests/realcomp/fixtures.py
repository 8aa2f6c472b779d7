"""Session fixtures for the real components; a pytest plugin loaded by tests/conftest.py.

- ``tools_python`` (``Path``): the tools venv's interpreter, ``<repo>/.tools-venv/bin/python``
  (CPython 3.11). It ensures the venv first, under its lock: built once, up front, by
  ``.ci/run``; built here for local runs when missing or stale. A venv that cannot be built
  fails every test that needs it, with the reason and the command that builds it by hand;
  it is never a skip.
- ``mcp_sdk_server_command`` (``list[str]``): ``[tools_python, <path of mcp_sdk_server.py>]``,
  the command line of the official MCP SDK server over stdio. Shared by the whole session:
  copy it before changing it.
- ``sse_peer`` (``Callable[..., SsePeer]``): starts ``sse_server.py`` (sse-starlette on
  uvicorn, 127.0.0.1 port 0) with the tools venv's interpreter and the given command-line
  arguments, and returns it once it has printed its URL. Function-scoped: every peer started
  is stopped (SIGTERM, then SIGKILL), waited for and its pipe closed after the test.
- ``opa_server`` (``Callable[..., OpaServer]``): starts ``opa_server.py`` (the real OPA engine,
  v1.20.2, behind our OPA Data API framing; 127.0.0.1 port 0) with the tools venv's interpreter,
  the given Rego files preloaded: ``opa_server(shipped_policy("gateway.rego")).url``.
  Function-scoped, stopped after the test like ``sse_peer``.
- ``gateway_opa_server`` (``OpaServer``): one such server for the whole session with the
  shipped ``gateway.rego`` loaded; the policy for ``OPAAuthorizer(url)``'s default path
  ``sark/gateway/decision``. Shared: never PUT or DELETE policies on it (use ``opa_server``).
- ``mcp_http_server`` (``Callable[..., McpHttpServer]``): starts ``mcp_http_server.py`` (the
  official MCP SDK server over Streamable HTTP or the legacy HTTP+SSE, 127.0.0.1 port 0) in a
  mode of ``MCP_HTTP_MODES`` and returns it once it has printed ``READY <url>``.
  Function-scoped, stopped after the test like ``sse_peer``.
- ``recording_proxy`` (``Callable[[str], RecordingProxy]``): a loopback proxy in front of a
  server URL that records every request (``recording_proxy.py``); closed after the test.
- ``mcp1_python`` (``Path``) and ``mcp1_http_server`` (``Callable[..., Mcp1HttpServer]``): the
  older official server (``mcp`` 1.x, up to 2025-11-25: no ``server/discover``) from its own
  venv ``<repo>/.mcp1-venv`` (requirements-mcp1.txt), started like ``mcp_http_server``.
- ``contextforge`` (``ContextForgePeer``, session scope, parametrized ``stateless`` and
  ``stateful``): IBM ContextForge 1.1.0 (contextforge venv, ``contextforge_python``) with the
  official SDK server ``contextforge_upstream`` registered through its REST API; ``.url`` is
  the virtual server's MCP endpoint, ``.headers`` its admin JWT (realcomp/contextforge.py).
- ``mcp_client_stdio_command``, ``mcp_client_tools_only_command``, ``mcp_client_http_server``,
  ``mcp_client_tools_only_http_server``: the official server that uses the client side of MCP
  (mcp_client_server.py), and ``mcp_client_peer``: in realcomp/client_fixtures.py, a plugin too.
- ``shipped_policy(name)``: the path of a Rego file of the *installed* sark_sync (the wheel's
  copy under tox), found without importing sark_sync.
"""

from __future__ import annotations

import importlib.util
import json
import os
import selectors
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable, TypeVar

import pytest

from realcomp import tools_venv
from realcomp.contextforge import ContextForge, ContextForgeError, ContextForgePeer
from realcomp.recording_proxy import RecordingProxy

#: The MCP SDK server script, run with the tools venv's interpreter.
MCP_SDK_SERVER = Path(__file__).resolve().with_name("mcp_sdk_server.py")
#: The SSE server script (sse-starlette on uvicorn), run with the tools venv's interpreter.
SSE_SERVER = Path(__file__).resolve().with_name("sse_server.py")
#: Bound for the SSE server to print its URL (it takes about 0.5s to import and bind).
SSE_START_TIMEOUT = 15.0
#: Grace period for the SSE server to exit after SIGTERM (it takes about 0.1-0.6s).
SSE_EXIT_TIMEOUT = 5.0
#: Bound for one request to the SSE server's /stats.
SSE_STATS_TIMEOUT = 5.0
#: The OPA Data API server (the real OPA engine), run with the tools venv's interpreter.
OPA_SERVER = Path(__file__).resolve().with_name("opa_server.py")
#: Bound for the OPA server to print its URL (it takes about 0.1-0.3s to load the engine).
OPA_START_TIMEOUT = 15.0
#: Grace period for the OPA server to exit after SIGTERM (it exits at once).
OPA_EXIT_TIMEOUT = 5.0
#: Bound for one request to the OPA server.
OPA_REQUEST_TIMEOUT = 10.0
#: Dropped from the children's environment: the tools interpreter must not see the test env's
#: paths, and the servers must flush what they print themselves.
SCRUBBED_ENV = ("PYTHONUNBUFFERED", "PYTHONPATH", "PYTHONHOME")


@pytest.fixture(scope="session")
def tools_python() -> Path:
    """The tools venv's python, the venv created or reused first."""
    try:
        return tools_venv.tools_python()
    except tools_venv.ToolsVenvError as exc:
        problem = str(exc)
    # Outside the except block: the message says it all, the chained traceback would not.
    pytest.fail(f"the tools venv is not usable: {problem}", pytrace=False)


@pytest.fixture(scope="session")
def mcp_sdk_server_command(tools_python: Path) -> list[str]:
    """The command that serves tests/realcomp/mcp_sdk_server.py over stdio."""
    return [str(tools_python), str(MCP_SDK_SERVER)]


class _ServerProcess:
    """A server script run with the tools python: spawned without the test env's paths,
    stderr to ``log_path``; it prints its URL on stdout when ready (:meth:`wait_for_url`) and
    stops on SIGTERM (:meth:`stop`)."""

    #: What the failure messages call it, and its start and exit bounds.
    what = "the server"
    start_timeout = SSE_START_TIMEOUT
    exit_timeout = SSE_EXIT_TIMEOUT

    def __init__(self, argv: list[str], log_path: Path) -> None:
        self.log_path = log_path
        env = {k: v for k, v in os.environ.items() if k not in SCRUBBED_ENV}
        with open(log_path, "wb") as log:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                                         stdout=subprocess.PIPE, stderr=log, env=env)
        self.url = ""

    def wait_for_url(self, timeout: float | None = None) -> str:
        """Read the URL line the server prints once it serves; fail the test after
        ``timeout`` (None: ``start_timeout``) or if it exits first, quoting its log."""
        timeout = self.start_timeout if timeout is None else timeout
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        buffer = b""
        deadline = time.monotonic() + timeout
        with selectors.DefaultSelector() as selector:
            selector.register(fd, selectors.EVENT_READ)
            while b"\n" not in buffer:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    pytest.fail(f"{self.what} printed no URL within {timeout:g}s; "
                                f"its log:\n{self.log()}", pytrace=False)
                if selector.select(remaining):
                    chunk = os.read(fd, 4096)
                    if not chunk:
                        self.proc.wait(self.exit_timeout)
                        pytest.fail(f"{self.what} exited ({self.proc.returncode}) before "
                                    f"printing its URL; its log:\n{self.log()}", pytrace=False)
                    buffer += chunk
        self.url = buffer.split(b"\n", 1)[0].decode().strip()
        return self.url

    def __enter__(self: _S) -> _S:
        """Wait for its URL (stopping it if that fails); stop it on leaving the block."""
        try:
            self.wait_for_url()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def log(self) -> str:
        """The server's stderr so far."""
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError as exc:
            return f"(no log: {exc})"

    def stop(self) -> int:
        """SIGTERM, then SIGKILL after ``exit_timeout``; return the exit code. Idempotent."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(self.exit_timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        return self.proc.returncode


_S = TypeVar("_S", bound=_ServerProcess)


def _start_each(make: Callable[[int, tuple[Any, ...]], _S]) -> Iterator[Callable[..., _S]]:
    """The ``start(*args)`` of a function-scoped fixture: ``make(n, args)`` builds its n-th
    server, which is waited for; every server started is stopped after the test."""
    started: list[_S] = []

    def start(*args: Any) -> _S:
        server = make(len(started), args)
        started.append(server)
        server.wait_for_url()
        return server

    yield start
    for server in started:
        server.stop()


class SsePeer(_ServerProcess):
    """One running ``sse_server.py``: its base ``url``, its ``stats()``, its log."""

    what = "the SSE server"

    def __init__(self, args: list[str], python: Path, log_path: Path) -> None:
        self.args = args
        super().__init__([str(python), str(SSE_SERVER), *args], log_path)

    def stats(self) -> dict[str, Any]:
        """What the server did so far (``GET /stats``; see sse_server.py)."""
        with urllib.request.urlopen(self.url + "/stats", timeout=SSE_STATS_TIMEOUT) as answer:
            stats: dict[str, Any] = json.loads(answer.read())
        return stats


@pytest.fixture
def sse_peer(tools_python: Path, tmp_path: Path) -> Iterator[Callable[..., SsePeer]]:
    """Start tests/realcomp/sse_server.py with the given arguments: ``sse_peer("--events",
    "10").url``. Every peer started is stopped after the test."""
    yield from _start_each(lambda n, args: SsePeer(
        list(args), tools_python, tmp_path / f"sse_server_{n}.log"))


def shipped_policy(name: str = "gateway.rego") -> Path:
    """A Rego file of the installed sark_sync's ``policies/`` folder (the wheel's copy under
    tox), found without importing sark_sync."""
    spec = importlib.util.find_spec("sark_sync")
    assert spec is not None and spec.origin is not None, "sark_sync is not installed"
    path = Path(spec.origin).resolve().parent / "policies" / name
    assert path.is_file(), f"{name} is not installed with sark_sync: {path}"
    return path


class OpaServer(_ServerProcess):
    """One running ``opa_server.py``: its base ``url``, JSON requests to it, its log.

    ``request``, ``put_policy`` and ``data`` return ``(status, document)`` whatever the status
    (4xx and 5xx included), straight from the wire, never through a proxy.
    """

    what = "the OPA server"
    start_timeout = OPA_START_TIMEOUT
    exit_timeout = OPA_EXIT_TIMEOUT

    def __init__(self, policies: list[Path], python: Path, log_path: Path) -> None:
        argv = [str(python), str(OPA_SERVER)]
        for policy in policies:
            argv += ["--policy", str(policy)]
        super().__init__(argv, log_path)
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, Any]:
        """``method path`` with ``body``; the status and the decoded JSON answer."""
        request = urllib.request.Request(self.url + path, data=body, method=method)
        if body is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with self._opener.open(request, timeout=OPA_REQUEST_TIMEOUT) as answer:
                return answer.status, json.loads(answer.read())
        except urllib.error.HTTPError as error:
            with error:
                return error.code, json.loads(error.read())

    def put_policy(self, policy_id: str, source: str) -> tuple[int, Any]:
        """``PUT /v1/policies/<policy_id>`` with the Rego ``source``."""
        return self.request("PUT", f"/v1/policies/{policy_id}", source.encode())

    def data(self, path: str, input_document: Any = None) -> tuple[int, Any]:
        """``POST /v1/data/<path>`` with ``{"input": input_document}`` (no input when None)."""
        body = {} if input_document is None else {"input": input_document}
        return self.request("POST", f"/v1/data/{path.strip('/')}", json.dumps(body).encode())


@pytest.fixture
def opa_server(tools_python: Path, tmp_path: Path) -> Iterator[Callable[..., OpaServer]]:
    """Start tests/realcomp/opa_server.py with these Rego files loaded:
    ``opa_server(shipped_policy()).url``. Every server started is stopped after the test."""
    yield from _start_each(lambda n, policies: OpaServer(
        list(policies), tools_python, tmp_path / f"opa_server_{n}.log"))


@pytest.fixture(scope="session")
def gateway_opa_server(
    tools_python: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OpaServer]:
    """One OPA server for the session, the shipped gateway.rego loaded. Do not change its
    policies."""
    log_path = tmp_path_factory.mktemp("gateway_opa") / "opa_server.log"
    with OpaServer([shipped_policy("gateway.rego")], tools_python, log_path) as server:
        yield server


#: The MCP SDK server over HTTP (Streamable HTTP or the legacy HTTP+SSE), run with the tools
#: venv's interpreter.
MCP_HTTP_SERVER = Path(__file__).resolve().with_name("mcp_http_server.py")
#: The modes of ``mcp_http_server(mode)`` and the server's options for each.
MCP_HTTP_MODES = {
    "stateful": [],
    "stateful-json": ["--json-response"],
    "stateless": ["--stateless"],
    "stateless-json": ["--stateless", "--json-response"],
    "legacy-sse": ["--transport", "sse"],
    "resumable": ["--event-store", "--retry-ms", "300"],
}
#: Bound for the MCP HTTP server to print its READY line (it takes about 0.5-1s to import).
MCP_HTTP_START_TIMEOUT = 20.0
#: Grace period for the MCP HTTP server to exit after SIGTERM (it promises 2s, open streams
#: included; it takes about 0.1-0.6s).
MCP_HTTP_EXIT_TIMEOUT = 5.0
#: What the MCP HTTP server prints before its URL when it serves.
MCP_HTTP_READY = "READY "


class McpHttpServer(_ServerProcess):
    """One running ``mcp_http_server.py`` in a ``mode`` of ``MCP_HTTP_MODES``: its endpoint
    ``url`` (``/mcp``, or ``/sse`` in ``legacy-sse`` mode), its ``proc`` and its log."""

    what = "the MCP HTTP server"
    start_timeout = MCP_HTTP_START_TIMEOUT
    exit_timeout = MCP_HTTP_EXIT_TIMEOUT

    def __init__(self, mode: str, python: Path, log_path: Path,
                 env: dict[str, str] | None = None) -> None:
        if mode not in MCP_HTTP_MODES:
            raise ValueError(f"unknown mode {mode!r}; one of {sorted(MCP_HTTP_MODES)}")
        self.mode = mode
        self.log_path = log_path
        child_env = {k: v for k, v in os.environ.items() if k not in SCRUBBED_ENV}
        child_env.update(env or {})
        with open(log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [str(python), str(MCP_HTTP_SERVER), *MCP_HTTP_MODES[mode]],
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log, env=child_env)
        self.url = ""

    def wait_for_url(self, timeout: float | None = None) -> str:
        """Read the ``READY <url>`` line; fail the test if the line says anything else."""
        line = super().wait_for_url(timeout)
        if not line.startswith(MCP_HTTP_READY):
            self.stop()
            pytest.fail(f"{self.what} printed {line!r}, not {MCP_HTTP_READY}<url>; its log:\n"
                        f"{self.log()}", pytrace=False)
        self.url = line[len(MCP_HTTP_READY):]
        return self.url


@pytest.fixture
def mcp_http_server(tools_python: Path, tmp_path: Path) -> Iterator[Callable[..., McpHttpServer]]:
    """``mcp_http_server(mode, env=None)``: start tests/realcomp/mcp_http_server.py in a mode
    of ``MCP_HTTP_MODES`` with these extra environment variables, and return it once it has
    printed its URL: ``mcp_http_server("stateless").url``. Every server started is stopped
    after the test (SIGTERM, then SIGKILL), waited for and its pipe closed."""
    started: list[McpHttpServer] = []

    def start(mode: str, env: dict[str, str] | None = None) -> McpHttpServer:
        server = McpHttpServer(mode, tools_python,
                               tmp_path / f"mcp_http_server_{len(started)}.log", env)
        started.append(server)
        server.wait_for_url()
        return server

    yield start
    for server in started:
        server.stop()

@pytest.fixture
def recording_proxy() -> Iterator[Callable[..., RecordingProxy]]:
    """``recording_proxy(url, **options)``: a :class:`RecordingProxy` (127.0.0.1, port 0) in
    front of the server of ``url`` (options: ``cut_after_events``, ``trickle``, ``only``); its
    ``.url`` is ``url`` through the proxy. Every proxy made is closed after the test, before
    the servers of the fixtures it was requested after."""
    made: list[RecordingProxy] = []

    def make(url: str, **options: Any) -> RecordingProxy:
        proxy = RecordingProxy(url, **options)
        made.append(proxy)
        return proxy

    yield make
    for proxy in made:
        proxy.close()


#: The older official MCP server (mcp 1.x: 2025-11-25 at most), run with the mcp1 venv's python.
MCP1_HTTP_SERVER = Path(__file__).resolve().with_name("mcp1_http_server.py")
#: The modes of ``mcp1_http_server(mode)`` and the server's options for each.
MCP1_HTTP_MODES = {
    "stateful": [],
    "stateless-json": ["--stateless", "--json-response"],
}


@pytest.fixture(scope="session")
def mcp1_python() -> Path:
    """The python of the mcp1 venv (``<repo>/.mcp1-venv``, CPython 3.11, mcp 1.x from
    requirements-mcp1.txt), the venv created or reused first."""
    try:
        return tools_venv.mcp1_python()
    except tools_venv.ToolsVenvError as exc:
        problem = str(exc)
    pytest.fail(f"the mcp1 venv is not usable: {problem}", pytrace=False)


class Mcp1HttpServer(McpHttpServer):
    """One running ``mcp1_http_server.py`` (mcp 1.x) in a ``mode`` of ``MCP1_HTTP_MODES``."""

    what = "the mcp 1.x HTTP server"

    def __init__(self, mode: str, python: Path, log_path: Path) -> None:
        if mode not in MCP1_HTTP_MODES:
            raise ValueError(f"unknown mode {mode!r}; one of {sorted(MCP1_HTTP_MODES)}")
        self.mode = mode
        self.log_path = log_path
        env = {k: v for k, v in os.environ.items() if k not in SCRUBBED_ENV}
        with open(log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [str(python), str(MCP1_HTTP_SERVER), *MCP1_HTTP_MODES[mode]],
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log, env=env)
        self.url = ""


@pytest.fixture
def mcp1_http_server(mcp1_python: Path,
                     tmp_path: Path) -> Iterator[Callable[..., Mcp1HttpServer]]:
    """``mcp1_http_server(mode="stateful")``: start tests/realcomp/mcp1_http_server.py (the
    older official server, up to 2025-11-25) and return it once it has printed its URL.
    Every server started is stopped after the test, like ``mcp_http_server``."""
    yield from _start_each(lambda n, args: Mcp1HttpServer(
        args[0] if args else "stateful", mcp1_python, tmp_path / f"mcp1_http_server_{n}.log"))


@pytest.fixture(scope="session")
def contextforge_python() -> Path:
    """The python of the contextforge venv (``<repo>/.contextforge-venv``, CPython 3.12,
    requirements-contextforge.txt), the venv created or reused first."""
    try:
        return tools_venv.python_of("contextforge")
    except tools_venv.ToolsVenvError as exc:
        problem = str(exc)
    pytest.fail(f"the contextforge venv is not usable: {problem}", pytrace=False)


@pytest.fixture(scope="session")
def contextforge_upstream(tools_python: Path,
                          tmp_path_factory: pytest.TempPathFactory) -> Iterator[McpHttpServer]:
    """The official SDK server (``mcp_http_server.py``, stateful) that every ``contextforge``
    registers, one for the session."""
    log_path = tmp_path_factory.mktemp("contextforge_upstream") / "mcp_http_server.log"
    with McpHttpServer("stateful", tools_python, log_path) as server:
        yield server


@pytest.fixture(scope="session", params=["stateless", "stateful"])
def contextforge(request: pytest.FixtureRequest, contextforge_python: Path,
                 contextforge_upstream: McpHttpServer,
                 tmp_path_factory: pytest.TempPathFactory) -> Iterator[ContextForgePeer]:
    """A ``ContextForgePeer`` (realcomp/contextforge.py): IBM ContextForge in a mode of
    ``CONTEXTFORGE_MODES`` with ``contextforge_upstream`` registered as gateway ``sdk``; its
    ``url`` is the virtual server's MCP endpoint, ``headers`` carry an admin JWT. Session
    scope, parametrized by mode: one ContextForge per mode per session, at most one running
    (pytest groups the tests by mode; pick one with ``indirect=True``). Starting one takes
    about 10 s."""
    mode = request.param
    gateway = ContextForge(mode, contextforge_python,
                           tmp_path_factory.mktemp(f"contextforge_{mode}"))
    try:
        try:
            gateway.start()
            peer = gateway.register(contextforge_upstream.url, gateway.issue_token())
            gateway.warm_up(peer)
        except ContextForgeError as exc:
            problem = str(exc)
        else:
            problem = ""
        if problem:
            pytest.fail(f"ContextForge ({mode}) is not usable: {problem}", pytrace=False)
        yield peer
    finally:
        gateway.stop()

