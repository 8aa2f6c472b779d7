"""Helpers shared by the integration tests (imported as ``support``; tests/ is on sys.path)."""

from __future__ import annotations

import base64
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, TypeVar

import sark_sync
from sark_sync.testing import LocalGateway, ToolFailure

API_KEY = "itest-api-key-0123456789"
JWT_SECRET = "itest-jwt-secret"

#: Fast retries: the behaviour under test is which requests are retried, not how long apart.
FAST_RETRY = sark_sync.RetryPolicy(backoff_base=0.01, backoff_max=0.05)

#: How long :func:`wait_until` pauses between two checks: short, so a test waits hardly longer
#: than the condition takes; long enough not to starve the threads under test on 2 cores.
POLL_INTERVAL = 0.01

T = TypeVar("T")


def build_gateway(**options: Any) -> LocalGateway:
    """A gateway with two servers and a few tools, not yet started."""
    gateway = LocalGateway(api_keys=(API_KEY,), jwt_secret=JWT_SECRET, **options)
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

    return gateway


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


def wait_until(
    condition: Callable[[], T | None],
    timeout: float,
    *,
    interval: float = POLL_INTERVAL,
    message: str | Callable[[], str] | None = None,
) -> T:
    """Poll ``condition`` until it returns a truthy value, and return that value.

    ``condition`` is called at once, then every ``interval`` seconds, and once more when
    ``timeout`` seconds have passed; only then does the wait fail. ``message`` says what is
    awaited, for the failure ("the child to exit"); a callable is called only on failure, so it
    can report the state at that moment. Without it, the failure names the condition's function.
    The pauses are bounded waits on a private :class:`threading.Event`: no thread is started.

    Raises :class:`AssertionError` ``timed out after {timeout}s waiting for {message}``.

    >>> wait_until(lambda: 42, 1.0)
    42
    """
    deadline = time.monotonic() + timeout
    pause = threading.Event()  # never set: each wait lasts its timeout
    while True:
        value = condition()
        if value:
            return value
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            awaited = message() if callable(message) else message
            if awaited is None:
                awaited = f"{getattr(condition, '__qualname__', condition)} to hold"
            raise AssertionError(f"timed out after {timeout:g}s waiting for {awaited}")
        pause.wait(min(interval, remaining))


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
        _, status = wait_until(exited, timeout, message=f"child process {pid} to exit")
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
