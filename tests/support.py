"""The test suite's shared vocabulary (imported as ``support``; tests/ is on sys.path).

- **Credentials.** Every test gateway accepts ONE API key, :data:`API_KEY`, and signs user
  tokens with :data:`JWT_SECRET`; the users are :data:`USERS` (``token_of(gateway, "alice")``).
  :data:`OTHER_KEY` is a second key, accepted only where a test passes
  ``api_keys=(API_KEY, OTHER_KEY)`` to tell two callers apart.
- **Gateways.** :func:`build_gateway` is the one builder of test gateways (one of the
  :data:`CATALOGUES`, or a test's own); the ``make_gateway``/``gateway``/``client`` fixtures of
  ``tests/integration/conftest.py`` start and stop what it builds.
- **Waiting.** :func:`wait_for` is the one way a test waits for a state: it polls with a
  deadline and fails saying what it waited for (:func:`blocked_in_socket_read`: a reader
  thread is waiting for bytes). Threads are made to overlap with a
  :class:`threading.Barrier` or an :class:`threading.Event`, never a sleep.
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
import signal
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, TypeVar, Union

import pytest

import sark_sync
from sark_sync.testing import LocalGateway, ToolFailure

#: The one API key of every test gateway.
API_KEY = "itest-api-key-0123456789"
#: A second key, for the few tests that tell two callers apart: pass
#: ``api_keys=(API_KEY, OTHER_KEY)`` to the gateway; no gateway accepts it by default.
OTHER_KEY = "itest-other-key-9876543210"
#: The secret the test gateways sign and check user tokens with.
JWT_SECRET = "itest-jwt-secret"
#: The users of the test gateways: name -> (roles, teams). alice, a developer of team data,
#: clears low and medium and may use servers of team data; bob, a viewer of team ml, clears
#: low only.
USERS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "alice": (("developer",), ("data",)),
    "bob": (("viewer",), ("ml",)),
}

#: Fast retries: the behaviour under test is which requests are retried, not how long apart.
FAST_RETRY = sark_sync.RetryPolicy(backoff_base=0.01, backoff_max=0.05)

#: The default bound of :func:`wait_for`: never reached when the code is right, generous for
#: a loaded 2-core machine.
WAIT = 10.0
#: How long :func:`wait_for` pauses between two checks: short, so a test waits hardly longer
#: than the condition takes; long enough not to starve the threads under test on 2 cores.
POLL_INTERVAL = 0.01

T = TypeVar("T")


def _client_catalogue(gateway: LocalGateway) -> None:
    gateway.add_server("demo", sensitivity_level="low")
    gateway.add_server("other", sensitivity_level="medium", authorized_teams=("data",))

    @gateway.tool("demo", description="Echo the parameters back.")
    def echo(parameters: dict[str, Any]) -> Any:
        return parameters

    @gateway.tool("demo", annotations={"readOnlyHint": True})
    def read_only(parameters: dict[str, Any]) -> Any:
        return {"ok": True}

    @gateway.tool("demo")
    def fail(parameters: dict[str, Any]) -> Any:
        raise ToolFailure("the tool failed on purpose")

    @gateway.tool("other")
    def ping(parameters: dict[str, Any]) -> Any:
        return "pong"


def _local_gateway_catalogue(gateway: LocalGateway) -> None:
    gateway.add_server("demo", transport="stdio", sensitivity_level="low")
    gateway.add_server("data-mcp", sensitivity_level="high", authorized_teams=("data",))

    @gateway.tool("demo", description="Echo the parameters.",
                  annotations={"readOnlyHint": True})
    def echo(parameters: dict[str, Any]) -> object:
        return parameters

    @gateway.tool("demo")
    def text(parameters: dict[str, Any]) -> object:
        return f"hello {parameters.get('name', 'world')}"

    @gateway.tool("data-mcp", name="query", sensitive_params=("password",))
    def run_query(parameters: dict[str, Any]) -> object:
        """Run a query."""
        return {"rows": [[1]]}


def _no_server(gateway: LocalGateway) -> None:
    pass


#: The named catalogues of :func:`build_gateway`.
#:
#: - ``"client"`` (what the client tests call): ``demo`` (low) with ``echo`` (returns its
#:   parameters), ``read_only`` (read-only hint, returns ``{"ok": True}``) and ``fail`` (a tool
#:   error); ``other`` (medium, team data) with ``ping`` (returns ``"pong"``).
#: - ``"local_gateway"`` (what the LocalGateway's own tests inspect): ``demo`` (labelled stdio,
#:   low) with ``echo`` (read-only, returns its parameters) and ``text`` (``hello {name}``);
#:   ``data-mcp`` (high, team data) with ``query`` (``password`` sensitive, returns one row).
#: - ``"empty"``: no server.
CATALOGUES: dict[str, Callable[[LocalGateway], None]] = {
    "client": _client_catalogue,
    "local_gateway": _local_gateway_catalogue,
    "empty": _no_server,
}

Catalogue = Union[str, Callable[[LocalGateway], None]]


def build_gateway(catalogue: Catalogue = "client", **options: Any) -> LocalGateway:
    """A test gateway, not yet started: :data:`API_KEY` and :data:`JWT_SECRET` (unless
    ``options`` say otherwise; the rest of ``options`` go to :class:`LocalGateway`) and the
    servers of ``catalogue``: a name in :data:`CATALOGUES`, or a function that registers the
    test's own servers on the gateway it is given."""
    options.setdefault("api_keys", (API_KEY,))
    options.setdefault("jwt_secret", JWT_SECRET)
    gateway = LocalGateway(**options)
    populate = CATALOGUES[catalogue] if isinstance(catalogue, str) else catalogue
    populate(gateway)
    return gateway


def token_of(gateway: LocalGateway, user: str = "alice", **options: Any) -> str:
    """A token ``gateway`` issues for ``user`` of :data:`USERS` (``options``: more claims or
    ``ttl``, as :meth:`LocalGateway.issue_token` takes them)."""
    roles, teams = USERS[user]
    return gateway.issue_token(user, roles, teams, **options)


def unsigned_jwt(claims: Any, header: Any = None) -> str:
    """A compact JWT with these claims (a dict, or raw bytes for a broken payload) and a fake
    signature: what the client reads unverified (the gateway would refuse it)."""

    def segment(value: Any) -> str:
        raw = value if isinstance(value, bytes) else json.dumps(value).encode()
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    return f"{segment(header or {'alg': 'HS256'})}.{segment(claims)}.c2lnbmF0dXJl"


def paths(gateway: LocalGateway, prefix: str = "/api/v1/") -> list[str]:
    """The method and path of the requests the gateway received, in order."""
    return [r.method + " " + r.path for r in gateway.requests if r.path.startswith(prefix)]


def demo_server_command(*args: str) -> list[str]:
    """The command of the demo MCP server shipped in sark_sync.testing."""
    return [sys.executable, "-m", "sark_sync.testing.demo_server", *args]


def misbehave_command(mode: str, *args: str) -> list[str]:
    """The command of a misbehaving stdio server (``integration/stdio_servers/misbehave.py``)."""
    misbehave = Path(__file__).resolve().parent / "integration" / "stdio_servers" / "misbehave.py"
    return [sys.executable, str(misbehave), mode, *args]


def child_env(**extra: str) -> dict[str, str]:
    """What a test passes as a child's extra environment: PYTHONPATH when the tests run
    against a checkout (a tox run installs the package, and needs nothing)."""
    env = {"PYTHONPATH": os.environ["PYTHONPATH"]} if "PYTHONPATH" in os.environ else {}
    env.update(extra)
    return env


def wait_for(
    predicate: Callable[[], T | None],
    timeout: float = WAIT,
    *,
    what: str | Callable[[], str] | None = None,
    interval: float = POLL_INTERVAL,
) -> T:
    """Poll ``predicate`` until it returns a truthy value, and return that value: the one
    wait helper of the suite.

    ``predicate`` is called at once, then every ``interval`` seconds, and once more when
    ``timeout`` seconds have passed; only then does the wait fail. ``what`` says what is
    awaited, for the failure ("the child to exit"); a callable is called only on failure, so it
    can report the state at that moment. Without it, the failure names the predicate's function.
    The pauses are bounded waits on a private :class:`threading.Event`: no thread is started.

    Raises :class:`AssertionError` ``timed out after {timeout}s waiting for {what}``.

    >>> wait_for(lambda: 42, 1.0)
    42
    """
    deadline = time.monotonic() + timeout
    pause = threading.Event()  # never set: each wait lasts its timeout
    while True:
        value = predicate()
        if value:
            return value
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            awaited = what() if callable(what) else what
            if awaited is None:
                awaited = f"{getattr(predicate, '__qualname__', predicate)} to hold"
            raise AssertionError(f"timed out after {timeout:g}s waiting for {awaited}")
        pause.wait(min(interval, remaining))


def blocked_in_socket_read(thread: threading.Thread) -> bool:
    """Whether ``thread`` is blocked reading a socket: its innermost Python frame is
    :meth:`socket.SocketIO.readinto`, which waits in the C ``recv_into`` below it. A test waits
    for this state (with :func:`wait_for`) before it acts on the blocked reader, instead of
    sleeping and hoping the reader got there."""
    frame = sys._current_frames().get(thread.ident or -1)
    return frame is not None and frame.f_code is socket.SocketIO.readinto.__code__


def reap(pid: int, timeout: float) -> int:
    """Wait for the child process ``pid`` to exit, reap it, and return its exit code (``-N``
    if signal N ended it, as :attr:`subprocess.Popen.returncode`).

    Fails with :class:`AssertionError` after ``timeout`` seconds, once the child has been
    killed with SIGKILL and reaped: a child that hangs never outlives its test, nor stays a
    zombie. ``pid`` must be a child of this process (from :func:`os.fork`) not yet waited for.
    """

    def exited() -> tuple[int, int] | None:
        done, status = os.waitpid(pid, os.WNOHANG)
        return (done, status) if done else None  # a tuple: truthy even for status 0

    try:
        _, status = wait_for(exited, timeout, what=f"child process {pid} to exit")
    except AssertionError as exc:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        raise AssertionError(f"{exc} (killed it)") from None
    return os.waitstatus_to_exitcode(status)


def in_child(work: Callable[[], Any], timeout: float = 20.0) -> Any:
    """Run ``work`` in a forked child; return what it returned (JSON), or the error it raised
    as ``["raised", type name, message]``."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        status = 1
        try:
            os.close(read_end)
            try:
                outcome: Any = work()
            except Exception as exc:
                outcome = ["raised", type(exc).__name__, str(exc)]
            os.write(write_end, json.dumps(outcome).encode())
            status = 0
        finally:
            os._exit(status)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        reported = json.loads(pipe.read() or b"null")
    assert reap(pid, timeout=timeout) == 0
    return reported


def read_line(stream: io.TextIOBase | Any, timeout: float = WAIT) -> str:
    """Read one line from a child's pipe within ``timeout`` seconds."""
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.append(stream.readline()))
    reader.start()
    reader.join(timeout)
    if reader.is_alive():
        pytest.fail("no line from the child in time")
    return lines[0]


#: A fenced block of a Markdown page: its language and its body.
_FENCED = re.compile(r"^```(?P<lang>\w+)\n(?P<body>.*?)^```$", re.S | re.M)


def doc_blocks(page: Path, lang: str) -> list[str]:
    """The bodies of ``page``'s fenced blocks in ``lang``, in order."""
    return [m.group("body") for m in _FENCED.finditer(page.read_text(encoding="utf-8"))
            if m.group("lang") == lang]


def write_doc_package(page: Path, root: Path, package: str) -> list[str]:
    """Write the python blocks of ``page`` that start with ``# <package>/<name>.py`` to
    ``root/<package>/<name>.py`` (a package: an empty ``__init__.py`` too), as a reader
    would copy them; return the paths written, sorted."""
    written = []
    for body in doc_blocks(page, "python"):
        first = body.splitlines()[0]
        if re.fullmatch(rf"# {re.escape(package)}/\w+\.py", first):
            path = root / first[2:]
            path.parent.mkdir(exist_ok=True)
            path.write_text(body, encoding="utf-8")
            written.append(first[2:])
    (root / package / "__init__.py").write_text("", encoding="utf-8")
    return sorted(written)
