"""The stdio transport: one local MCP server process, newline-delimited JSON-RPC over pipes.

Lifecycle (DESIGN §6), and why every step is bounded:

- **Spawn** in its own process group (so shutdown reaches any grandchildren),
  ``close_fds=True``, and an environment built from an allow-list: the
  parent's secrets are not the server's business.
- **Read**: one reader thread owns stdout. It splits lines under a cap (a 20 MiB line is
  discarded, the request it answered fails with :class:`ProtocolError`, and the transport stays
  usable), and demultiplexes responses by id into waiting calls. Server requests and
  notifications go to callbacks, on the reader thread.
- **Stderr**: a second thread drains it into ``logging.getLogger("sark_sync.stdio")`` and keeps
  the last 100 lines for error messages; an undrained stderr pipe deadlocks a chatty child
  after ~64 KiB.
- **Write**: serialised by a lock, non-blocking with a deadline: a child that stops reading
  its stdin cannot block a caller forever.
- **Exit**: when stdout reaches EOF, every pending call fails at once with
  :class:`ProcessExitedError` (exit code, stderr tail).
- **Shutdown**: close stdin, wait 2 s; SIGTERM the process group, wait 2 s; SIGKILL it; reap.
  No zombies, no orphans, and nothing is ever done to a process inherited across ``fork()``.
"""

from __future__ import annotations

import collections
import copy
import errno
import itertools
import logging
import os
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any, Callable

from .. import _jsonrpc
from .._exceptions import (
    ProcessExitedError,
    ProcessStartError,
    ProtocolError,
    RPCError,
    TransportTimeout,
)
from .._validation import unencodable, validate_command, validate_env

__all__ = ["ENV_ALLOW_LIST", "StdioTransport", "child_environment"]

log = logging.getLogger("sark_sync.stdio")

#: Parent environment variables a child inherits unless the caller says otherwise.
ENV_ALLOW_LIST = ("HOME", "LOGNAME", "PATH", "SHELL", "TERM", "USER", "LANG")
#: Grace period for the server to exit after its stdin closes.
STDIN_CLOSE_TIMEOUT = 2.0
#: Grace period after SIGTERM before SIGKILL.
TERMINATE_TIMEOUT = 2.0
#: Longest wait for the kernel to reap a SIGKILLed process.
KILL_TIMEOUT = 2.0
#: Lines of stderr kept for error messages.
STDERR_TAIL_LINES = 100
#: Bytes per read from the child's pipes: the size of a pipe's buffer. Larger reads cost more
#: than they save: from 128 KiB, glibc serves each buffer with mmap/munmap, measured here at
#: +40 µs per round trip.
READ_CHUNK = 64 * 1024
#: Longest a write to the child's stdin may block when the caller gives no deadline.
WRITE_TIMEOUT = 10.0

Callback = Callable[[Any], None]

#: The child leads its own process group. On Python >= 3.11 without a new session: Linux
#: schedules every session as its own autogroup, and a child in another autogroup measured
#: 15-25 µs slower per round trip (bench_stdio). Older Pythons can only make a new session
#: safely (``preexec_fn`` is not safe with threads), which is as correct, only slower.
_OWN_GROUP: dict[str, Any] = (
    {"process_group": 0} if sys.version_info >= (3, 11) else {"start_new_session": True})


def child_environment(env: Mapping[str, str] | None, inherit: bool = False) -> dict[str, str]:
    """The environment of a child: the allow-list (or everything with ``inherit=True``) from
    this process, updated with ``env``."""
    source = os.environ
    base = dict(source) if inherit else {k: source[k] for k in ENV_ALLOW_LIST if k in source}
    base.update(env or {})
    return base


class _Pending:
    """One request waiting for its answer. The latch is a plain lock, held until the answer
    is in: a waiter blocked in C on ``acquire`` wakes faster than on a ``threading.Event``."""

    __slots__ = ("done", "error", "latch", "method", "result")

    def __init__(self, method: str) -> None:
        self.method = method
        self.latch = threading.Lock()
        self.latch.acquire()
        self.done = False
        self.result: Any = None
        self.error: BaseException | None = None

    def settle(self, result: Any, error: BaseException | None) -> bool:
        """Deliver the answer once (callers hold the transport's lock); False if it was
        already delivered."""
        if self.done:
            return False
        self.result, self.error, self.done = result, error, True
        self.latch.release()
        return True

    def wait(self, timeout: float) -> bool:
        return self.latch.acquire(timeout=max(0.0, timeout))


class StdioTransport:
    """A running child process and the JSON-RPC exchange with it. Thread-safe."""

    def __init__(
        self,
        command: Sequence[str],
        *,
        name: str | None = None,
        env: Mapping[str, str] | None = None,
        inherit_env: bool = False,
        cwd: str | os.PathLike[str] | None = None,
        max_line_bytes: int = _jsonrpc.DEFAULT_MAX_LINE_BYTES,
        on_request: Callable[[_jsonrpc.Request], None] | None = None,
        on_notification: Callable[[_jsonrpc.Notification], None] | None = None,
    ) -> None:
        self.command = validate_command(command)
        self.name = name or os.path.basename(self.command[0])
        self._env = child_environment(validate_env(env), inherit_env)
        self._cwd = cwd
        self._max_line_bytes = max_line_bytes
        self._on_request = on_request
        self._on_notification = on_notification
        self._ids = itertools.count(1)
        self._pending: dict[_jsonrpc.RequestId, _Pending] = {}
        self._lock = threading.Lock()  # guards _pending and _exit_error
        self._write_lock = threading.Lock()
        self._stderr_tail: collections.deque[str] = collections.deque(maxlen=STDERR_TAIL_LINES)
        self._exit_error: ProcessExitedError | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._threads: list[threading.Thread] = []
        self._owner_pid = os.getpid()
        self._closed = False

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        """Spawn the process and its reader threads; :class:`ProcessStartError` if it cannot."""
        try:
            process = subprocess.Popen(
                self.command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                stderr=subprocess.PIPE, env=self._env, cwd=self._cwd, close_fds=True,
                bufsize=0, **_OWN_GROUP,
            )
        except (OSError, ValueError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise ProcessStartError(
                f"could not start local MCP server {self.name!r}: {reason}: {self.command[0]!r}",
                command=self.command[0],
            ) from exc
        assert process.stdin is not None
        os.set_blocking(process.stdin.fileno(), False)
        self._process = process
        for target, role in ((self._read_stdout, "reader"), (self._read_stderr, "stderr")):
            thread = threading.Thread(target=target, name=f"sark-sync-stdio-{self.name}-{role}",
                                      daemon=True)
            thread.start()
            self._threads.append(thread)
        log.debug("started %s (pid %d): %s", self.name, process.pid, self.command)

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def returncode(self) -> int | None:
        return self._process.poll() if self._process is not None else None

    @property
    def alive(self) -> bool:
        return self._process is not None and self._exit_error is None and \
            self._process.poll() is None

    @property
    def stderr_tail(self) -> str:
        return "\n".join(self._stderr_tail)

    def close(self) -> None:
        """Stop the process (stdin close → SIGTERM → SIGKILL, each bounded) and its threads.

        Idempotent. In a process forked from the owner, it only forgets the child: the parent
        still owns it.
        """
        if self._closed:
            return
        self._closed = True
        process = self._process
        if process is None or os.getpid() != self._owner_pid:
            return
        self._fail_all(ProcessExitedError(
            f"local MCP server {self.name!r} was closed", returncode=None, server=self.name))
        _close_quietly(process.stdin)
        if not _wait(process, STDIN_CLOSE_TIMEOUT):
            _signal_group(process, signal.SIGTERM)
            if not _wait(process, TERMINATE_TIMEOUT):
                _signal_group(process, signal.SIGKILL)
                _wait(process, KILL_TIMEOUT)
        # Grandchildren left in the group would hold our pipes open: end them too, and wait
        # (bounded) until the group is empty, so nothing outlives close().
        _signal_group(process, signal.SIGKILL)
        _wait_group_gone(process.pid, KILL_TIMEOUT)
        for thread in self._threads:
            thread.join(KILL_TIMEOUT)
        _close_quietly(process.stdout)
        _close_quietly(process.stderr)
        log.debug("stopped %s (exit code %s)", self.name, process.returncode)

    def forget_after_fork(self) -> None:
        """In a forked child: drop every handle without touching the parent's process."""
        self._closed = True
        self._process = None
        self._threads = []

    # -- requests ------------------------------------------------------------------------------

    def request(self, method: str, params: Mapping[str, Any] | None, timeout: float) -> Any:
        """Send a request and wait up to ``timeout`` seconds for its result.

        Raises :class:`ValidationError` (nothing sent) if JSON cannot carry ``params``,
        :class:`RPCError` for a JSON-RPC error, :class:`ProcessExitedError` if the
        process is gone, :class:`ProtocolError` for an unreadable answer, and
        :class:`TransportTimeout` after sending ``notifications/cancelled`` on a timeout.
        """
        request_id = next(self._ids)
        try:
            line = _jsonrpc.encode_request(request_id, method, params)
        except (TypeError, ValueError) as exc:
            raise unencodable(exc) from None
        pending = _Pending(method)
        with self._lock:
            if self._exit_error is not None:
                raise copy.copy(self._exit_error)
            self._pending[request_id] = pending
        started = time.monotonic()
        try:
            self._write(line, timeout)
            if not pending.wait(timeout - (time.monotonic() - started)):
                raise TransportTimeout(
                    f"local MCP server {self.name!r} did not answer {method} within "
                    f"{timeout:.3g}s", server=self.name)
        except TransportTimeout:
            self._cancel(request_id, "timeout")
            raise
        finally:
            with self._lock:
                self._pending.pop(request_id, None)
        if pending.error is not None:
            raise pending.error
        return pending.result

    def notify(self, method: str, params: Mapping[str, Any] | None = None,
               timeout: float = WRITE_TIMEOUT) -> None:
        self._write(_jsonrpc.encode_notification(method, params), timeout)

    def respond(self, request_id: _jsonrpc.RequestId, result: Any) -> None:
        self._write(_jsonrpc.encode_response(request_id, result), WRITE_TIMEOUT)

    def respond_error(self, request_id: _jsonrpc.RequestId | None, code: int, message: str
                      ) -> None:
        self._write(_jsonrpc.encode_error(request_id, code, message), WRITE_TIMEOUT)

    def _cancel(self, request_id: int, reason: str) -> None:
        try:
            self.notify("notifications/cancelled", {"requestId": request_id, "reason": reason},
                        timeout=0.5)
        except (ProcessExitedError, TransportTimeout):
            pass

    def _write(self, data: bytes, timeout: float) -> None:
        """Write all of ``data`` to stdin within ``timeout``, one writer at a time."""
        process = self._process
        if process is None or process.stdin is None:
            raise ProcessExitedError(f"local MCP server {self.name!r} is not running",
                                     server=self.name)
        if os.getpid() != self._owner_pid:
            raise ProcessExitedError(
                f"local MCP server {self.name!r} belongs to the process that started it (pid "
                f"{self._owner_pid}); start a new one after fork()", server=self.name)
        deadline = time.monotonic() + timeout
        fd = process.stdin.fileno() if not process.stdin.closed else -1
        view = memoryview(data)
        if not self._write_lock.acquire(timeout=max(0.0, timeout)):
            raise TransportTimeout(f"timed out waiting to write to {self.name!r}",
                                   server=self.name)
        try:
            while view:
                try:
                    written = os.write(fd, view)
                    view = view[written:]
                    continue
                except BlockingIOError:
                    pass
                except OSError as exc:  # EPIPE, EBADF: the process is gone
                    raise self._exited_error(exc) from exc
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TransportTimeout(
                        f"local MCP server {self.name!r} stopped reading its stdin",
                        server=self.name)
                select.select([], [fd], [], remaining)
        finally:
            self._write_lock.release()

    # -- reading -------------------------------------------------------------------------------

    def _read_stdout(self) -> None:
        process = self._process
        assert process is not None and process.stdout is not None
        fd = process.stdout.fileno()
        splitter = _jsonrpc.LineSplitter(self._max_line_bytes)
        try:
            while True:
                chunk = _read(fd)
                if not chunk:
                    break
                for line in splitter.feed(chunk):
                    self._dispatch(line)
            for line in splitter.finish():
                self._dispatch(line)
        except Exception:  # a bug here must not leave callers waiting forever
            log.exception("stdio reader of %s failed", self.name)
        finally:
            self._on_eof()

    def _dispatch(self, line: bytes | _jsonrpc.Oversize) -> None:
        if isinstance(line, _jsonrpc.Oversize):
            self._on_oversize(line)
            return
        try:
            message = _jsonrpc.parse_line(line)
        except _jsonrpc.FramingError as exc:
            log.warning("%s wrote a line that is not JSON-RPC (ignored): %s", self.name, exc)
            if exc.id is not None:
                self._resolve(exc.id, error=ProtocolError(
                    f"unreadable answer from {self.name!r}: {exc}", server=self.name))
            return
        if isinstance(message, _jsonrpc.Response):
            self._resolve(message.id, result=message.result)
        elif isinstance(message, _jsonrpc.ErrorResponse):
            error = RPCError(f"{self.name!r} answered error {message.code}: {message.message}",
                             code=message.code, rpc_message=message.message, data=message.data,
                             server=self.name)
            if message.id is None:
                log.warning("%s reported an error without an id: %s", self.name, error)
            else:
                self._resolve(message.id, error=error)
        else:
            callback: Callable[[Any], None] | None = (
                self._on_request if isinstance(message, _jsonrpc.Request)
                else self._on_notification
            )
            if callback is not None:
                try:
                    callback(message)
                except Exception:
                    log.exception("callback for %s from %s failed", message.method, self.name)
            elif isinstance(message, _jsonrpc.Request):
                self.respond_error(message.id, _jsonrpc.METHOD_NOT_FOUND, "method not found")

    def _on_oversize(self, line: _jsonrpc.Oversize) -> None:
        request_id = line.find_id()
        with self._lock:
            if request_id is None and len(self._pending) == 1:
                request_id = next(iter(self._pending))
        log.warning("%s wrote a %d-byte line, over the %d-byte cap (discarded)", self.name,
                    line.size, self._max_line_bytes)
        if request_id is not None:
            self._resolve(request_id, error=ProtocolError(
                f"the answer of {self.name!r} is a {line.size}-byte line, over the "
                f"{self._max_line_bytes}-byte limit (max_line_bytes)", server=self.name))

    def _resolve(self, request_id: _jsonrpc.RequestId, *, result: Any = None,
                 error: BaseException | None = None) -> None:
        with self._lock:
            pending = self._pending.get(request_id)
            if pending is not None:
                pending.settle(result, error)
                return
        log.debug("%s answered unknown or abandoned request %r", self.name, request_id)

    def _read_stderr(self) -> None:
        process = self._process
        assert process is not None and process.stderr is not None
        fd = process.stderr.fileno()
        splitter = _jsonrpc.LineSplitter(64 * 1024)
        while True:
            chunk = _read(fd)
            lines = splitter.feed(chunk) if chunk else splitter.finish()
            for line in lines:
                text = (line.decode("utf-8", "replace") if isinstance(line, bytes)
                        else f"[a {line.size}-byte line]")
                self._stderr_tail.append(text)
                log.info("[%s] %s", self.name, text)
            if not chunk:
                return

    def _on_eof(self) -> None:
        process = self._process
        if process is not None:
            _wait(process, 1.0)  # it is exiting: give the kernel a moment to report the code
        for thread in self._threads[1:]:
            thread.join(0.5)  # the stderr tail explains the exit
        error = self._exited_error(None)
        self._fail_all(error)

    def _exited_error(self, cause: BaseException | None) -> ProcessExitedError:
        code = self._process.poll() if self._process is not None else None
        how = f"exited with code {code}" if code is not None and code >= 0 else (
            f"was killed by signal {-code}" if code is not None else "closed its pipes")
        return ProcessExitedError(f"local MCP server {self.name!r} {how}", returncode=code,
                                  stderr_tail=self.stderr_tail, server=self.name)

    def _fail_all(self, error: ProcessExitedError) -> None:
        with self._lock:
            if self._exit_error is None:
                self._exit_error = error
            for waiter in self._pending.values():
                # One instance per raiser: their tracebacks differ.
                waiter.settle(None, copy.copy(error))


def _read(fd: int) -> bytes:
    while True:
        try:
            return os.read(fd, READ_CHUNK)
        except InterruptedError:
            continue
        except OSError as exc:
            if exc.errno in (errno.EBADF, errno.EIO):
                return b""
            raise


def _wait(process: subprocess.Popen[bytes], timeout: float) -> bool:
    try:
        process.wait(timeout)
        return True
    except subprocess.TimeoutExpired:
        return False


def _signal_group(process: subprocess.Popen[bytes], signum: int) -> None:
    try:
        os.killpg(process.pid, signum)  # its own group: the group id is the pid
    except (ProcessLookupError, PermissionError):
        pass


def _wait_group_gone(pgid: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except (ProcessLookupError, PermissionError):
            return
        time.sleep(0.005)
    log.warning("process group %d still has members after SIGKILL", pgid)


def _close_quietly(stream: Any) -> None:
    try:
        if stream is not None:
            stream.close()
    except OSError:
        pass
