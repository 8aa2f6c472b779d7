"""The stdio transport: one local MCP server process, newline-delimited JSON-RPC over pipes.

Lifecycle, and why every step is bounded (the process, its pipes and its reader threads live
in ``_stdio_pipes``; the shutdown ladder and the background reaper in ``_stdio_process``):

- **Spawn** in its own process group (so shutdown reaches any grandchildren),
  ``close_fds=True``, and an environment built from an allow-list: the
  parent's secrets are not the server's business.
- **Read**: one reader thread owns stdout, but lends it to a caller waiting for its answer
  while nobody else reads (one wake-up per call instead of two: ``_stdio_baton``). Whoever
  reads splits lines under a cap (a 20 MiB line is discarded, the request it answered fails
  with :class:`ProtocolError`, and the transport stays usable), and demultiplexes responses
  by id into waiting calls. A line that cannot be decoded
  (nested too deeply, invalid UTF-8 ...) fails the call whose id it carries, never the thread.
  Server requests and notifications go to callbacks, on the reading thread.
- **Stderr**: a second thread drains it into ``logging.getLogger("sark_sync.stdio")`` and keeps
  the last 100 lines for error messages; an undrained stderr pipe deadlocks a chatty child
  after ~64 KiB.
- **Write**: serialised by a lock, non-blocking with a deadline: a child that stops reading
  its stdin cannot block a caller forever. A write cut by its deadline in the middle of a
  message leaves half a line in the pipe: the session is then dead (nothing more can be
  framed), so a pool starts a new one. On a call's timeout, ``notifications/cancelled`` is
  sent only if the pipe takes it at once: the timeout is the call's whole bound.
- **Exit**: both readers watch the process, not only their pipe: when it exits (even while a
  grandchild still holds its stdout), what it wrote is drained and every pending call fails at
  once with :class:`ProcessExitedError` (exit code, stderr tail). A server that closes its
  stdout or stdin fails them the same way, and is no longer ``alive``.
- **Shutdown** (``close()``): close stdin, wait 2 s; SIGTERM, wait 2 s; SIGKILL; reap; empty
  the process group; then wake the readers and join them, and only then close their fds.
  ``abandon()`` runs the same ladder on the background reaper, so a failed start or restart
  returns within its caller's deadline. No zombies, no orphans, no fd closed under a thread.
- **Fork**: a forked child closes its copies of the pipes at once (a parent's ``close()`` then
  still ends in a clean stdin EOF), and never signals or waits for the parent's process.
"""

from __future__ import annotations

import collections
import copy
import itertools
import logging
import os
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any, Callable

from .._exceptions import (
    ProcessExitedError,
    ProtocolError,
    RPCError,
    TransportTimeout,
)
from .._validation import validate_command, validate_env
from ..resilience import cancelled_error, cancels, current_cancellation, sent_reason, tell_cancelled
from ..wire import jsonrpc
from ._stdio_calls import PendingCall, encode_failure, encode_message
from ._stdio_pipes import ProcessClosed, ServerProcess
from ._stdio_process import KILL_TIMEOUT, STDIN_CLOSE_TIMEOUT, TERMINATE_TIMEOUT

__all__ = ["ENV_ALLOW_LIST", "KILL_TIMEOUT", "STDIN_CLOSE_TIMEOUT", "TERMINATE_TIMEOUT",
           "StdioTransport", "child_environment"]

log = logging.getLogger("sark_sync.stdio")

#: Parent environment variables a child inherits unless the caller says otherwise.
ENV_ALLOW_LIST = ("HOME", "LOGNAME", "PATH", "SHELL", "TERM", "USER", "LANG")
#: Lines of stderr kept for error messages.
STDERR_TAIL_LINES = 100
#: Longest stderr line kept whole (a longer one is logged as its size).
STDERR_LINE_BYTES = 64 * 1024
#: Longest a write to the child's stdin may block when the caller gives no deadline.
WRITE_TIMEOUT = 10.0

Callback = Callable[[Any], None]


def child_environment(env: Mapping[str, str] | None, inherit: bool = False) -> dict[str, str]:
    """The environment of a child: the allow-list (or everything with ``inherit=True``) from
    this process, updated with ``env``."""
    source = os.environ
    base = dict(source) if inherit else {k: source[k] for k in ENV_ALLOW_LIST if k in source}
    base.update(env or {})
    return base


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
        max_line_bytes: int = jsonrpc.DEFAULT_MAX_LINE_BYTES,
        on_request: Callable[[jsonrpc.Request], None] | None = None,
        on_notification: Callable[[jsonrpc.Notification], None] | None = None,
    ) -> None:
        self.command = validate_command(command)
        self.name = name or os.path.basename(self.command[0])
        self._env = child_environment(validate_env(env), inherit_env)
        self._cwd = cwd
        self._max_line_bytes = max_line_bytes
        self._on_request = on_request
        self._on_notification = on_notification
        self._ids = itertools.count(1)
        self._pending: dict[jsonrpc.RequestId, PendingCall] = {}
        self._lock = threading.Lock()  # guards _pending and _exit_error
        self._stderr_tail: collections.deque[str] = collections.deque(maxlen=STDERR_TAIL_LINES)
        self._exit_error: ProcessExitedError | None = None
        self._proc: ServerProcess | None = None
        self._owner_pid = os.getpid()
        self._stdout_lines = jsonrpc.LineSplitter(max_line_bytes)
        self._stderr_lines = jsonrpc.LineSplitter(STDERR_LINE_BYTES)

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        """Spawn the process and its reader threads; :class:`ProcessStartError` if it cannot."""
        self._proc = ServerProcess(
            self.command, name=self.name, env=self._env, cwd=self._cwd,
            on_stdout=self._on_stdout, on_stderr=self._on_stderr, on_stdout_end=self._on_eof,
            awaited=self._pending.__len__)
        log.debug("started %s (pid %d): %s", self.name, self._proc.process.pid, self.command)

    @property
    def _process(self) -> Any:
        """The ``subprocess.Popen`` of the server (None before ``start()``)."""
        return self._proc.process if self._proc is not None else None

    @property
    def pid(self) -> int | None:
        return self._proc.process.pid if self._proc is not None else None

    @property
    def returncode(self) -> int | None:
        return self._proc.process.poll() if self._proc is not None else None

    @property
    def alive(self) -> bool:
        return self._proc is not None and self._exit_error is None and \
            self._proc.process.poll() is None

    @property
    def stderr_tail(self) -> str:
        return "\n".join(self._stderr_tail)

    def close(self) -> None:
        """Stop the process (stdin close → SIGTERM → SIGKILL, each bounded), then its reader
        threads, then close its pipes. Idempotent; if the shutdown runs already (``abandon()``,
        another thread's ``close()``), waits for its end (at most the ladder's bound). In a
        process forked from the owner it does nothing: the parent still owns the process."""
        if self._stopping():
            assert self._proc is not None
            self._proc.close()

    def abandon(self) -> None:
        """Fail pending calls at once and leave the shutdown to the background reaper, which
        ends and reaps the process within the same ladder: for a server given up on within a
        caller's deadline. ``close()`` afterwards waits for the reaper to finish."""
        if self._stopping():
            assert self._proc is not None
            self._proc.abandon()

    def release(self) -> None:
        """``close()`` for a finalizer: never waits for a shutdown already under way."""
        if self._stopping():
            assert self._proc is not None
            self._proc.release()

    def _stopping(self) -> bool:
        if self._proc is None or os.getpid() != self._owner_pid:
            return False
        self._fail_all(ProcessExitedError(
            f"local MCP server {self.name!r} was closed", returncode=None, server=self.name))
        return True

    def forget_after_fork(self) -> None:
        """In a forked child: close our copies of the pipes, never touching the parent's
        process (the at-fork hook does it already; this covers forks that bypass it)."""
        if self._proc is not None:
            self._proc._after_fork_in_child()

    # -- requests ------------------------------------------------------------------------------

    def request(self, method: str, params: Mapping[str, Any] | None, timeout: float) -> Any:
        """Send a request and wait up to ``timeout`` seconds for its result.

        Raises :class:`ValidationError` (nothing sent) if JSON cannot carry ``params``,
        :class:`RPCError` for a JSON-RPC error, :class:`ProcessExitedError` if the
        process is gone, :class:`ProtocolError` for an unreadable answer, and
        :class:`TransportTimeout` after sending ``notifications/cancelled`` on a timeout
        (:class:`CallCancelled` after sending it when the call's token is cancelled).
        """
        request_id = next(self._ids)
        try:
            line = jsonrpc.encode_request(request_id, method, params)
        except Exception as exc:  # a caller's object may raise anything while it is encoded
            raise encode_failure(exc) from None
        pending = PendingCall(method)
        with self._lock:
            if self._exit_error is not None:
                raise copy.copy(self._exit_error)
            self._pending[request_id] = pending
        token = current_cancellation() if method == "tools/call" else None
        started = time.monotonic()  # below: only a call with a token can be cancelled
        cancelled = None if token is None else cancelled_error(self.name, method, token)
        try:
            proc = self._write(line, timeout)  # a timeout here: not sent (whole), nothing to cancel
            if token is None:  # read the answer here if nobody else reads (one wake-up)
                proc.read_for(pending.answered, timeout - (time.monotonic() - started))
                answered = pending.done or pending.wait(timeout - (time.monotonic() - started))
            else:
                with cancels(token, lambda: self._resolve(request_id, error=cancelled)):
                    answered = pending.wait(timeout - (time.monotonic() - started))
            if token is not None and cancelled is not None and pending.error is cancelled:
                self._cancel(request_id, sent_reason(cancelled, token))  # the token fired
            elif not answered:
                self._cancel(request_id, "timeout")
                raise TransportTimeout(
                    f"local MCP server {self.name!r} did not answer {method} within "
                    f"{timeout:.3g}s", server=self.name)
        finally:
            if request_id in self._pending:  # an answer took it out already (_resolve)
                with self._lock:
                    self._pending.pop(request_id, None)
        if pending.error is not None:
            raise pending.error
        return pending.result

    def notify(self, method: str, params: Mapping[str, Any] | None = None,
               timeout: float = WRITE_TIMEOUT) -> None:
        self._write(encode_message(lambda: jsonrpc.encode_notification(method, params)), timeout)

    def respond(self, request_id: jsonrpc.RequestId, result: Any) -> None:
        self._write(encode_message(lambda: jsonrpc.encode_response(request_id, result)),
                    WRITE_TIMEOUT)

    def respond_error(self, request_id: jsonrpc.RequestId | None, code: int, message: str
                      ) -> None:
        self._write(jsonrpc.encode_error(request_id, code, message), WRITE_TIMEOUT)

    def _cancel(self, request_id: int, reason: str) -> None:
        """Tell the server, if its stdin takes it at once (:func:`tell_cancelled`). A line this
        short is written whole or not at all: pipes write <= 4 KiB atomically."""
        tell_cancelled(self.notify, request_id, reason)

    def _write(self, data: bytes, timeout: float) -> ServerProcess:
        """Write all of ``data`` to stdin within ``timeout``, one writer at a time; the process
        it went to."""
        proc = self._proc
        if proc is None:
            raise ProcessExitedError(f"local MCP server {self.name!r} is not running",
                                     server=self.name)
        if os.getpid() != self._owner_pid:
            raise ProcessExitedError(
                f"local MCP server {self.name!r} belongs to the process that started it (pid "
                f"{self._owner_pid}); start a new one after fork()", server=self.name)
        try:
            proc.write(data, timeout)
            return proc
        except TransportTimeout:  # a TimeoutError, so an OSError: not a broken pipe
            if proc.torn:  # half a message went out: no later one can be framed
                self._fail_all(ProcessExitedError(
                    f"local MCP server {self.name!r} stopped reading its stdin in the middle "
                    "of a message; start it again", server=self.name))
            raise
        except ProcessClosed:
            with self._lock:
                error = self._exit_error
            raise copy.copy(error) if error is not None else ProcessExitedError(
                f"local MCP server {self.name!r} was closed", server=self.name) from None
        except OSError as exc:  # EPIPE: it closed its stdin, or exited
            error = self._exited_error(exc)
            self._fail_all(error)  # it cannot be used any more: no longer alive
            raise error from exc

    # -- reading -------------------------------------------------------------------------------

    def _on_stdout(self, chunk: bytes) -> None:
        lines = self._stdout_lines.feed(chunk) if chunk else self._stdout_lines.finish()
        for line in lines:
            self._dispatch(line)

    def _on_stderr(self, chunk: bytes) -> None:
        lines = self._stderr_lines.feed(chunk) if chunk else self._stderr_lines.finish()
        for line in lines:
            text = (line.decode("utf-8", "replace") if isinstance(line, bytes)
                    else f"[a {line.size}-byte line]")
            self._stderr_tail.append(text)
            log.info("[%s] %s", self.name, text)

    def _dispatch(self, line: bytes | jsonrpc.Oversize) -> None:
        if isinstance(line, jsonrpc.Oversize):
            self._on_oversize(line)
            return
        try:
            message = jsonrpc.parse_line(line)
        except jsonrpc.FramingError as exc:
            log.warning("%s wrote a line that is not JSON-RPC (ignored): %s", self.name, exc)
            if exc.salvaged_id is not None:
                self._resolve(exc.salvaged_id, error=ProtocolError(
                    f"unreadable answer from {self.name!r}: {exc}", server=self.name))
            return
        if isinstance(message, jsonrpc.Response):
            self._resolve(message.id, result=message.result)
        elif isinstance(message, jsonrpc.ErrorResponse):
            error = RPCError(f"{self.name!r} answered error {message.code}: {message.message}",
                             code=message.code, rpc_message=message.message, data=message.data,
                             server=self.name)
            if message.id is None:
                log.warning("%s reported an error without an id: %s", self.name, error)
            else:
                self._resolve(message.id, error=error)
        else:
            callback: Callable[[Any], None] | None = (
                self._on_request if isinstance(message, jsonrpc.Request)
                else self._on_notification
            )
            try:
                if callback is not None:
                    callback(message)
                elif isinstance(message, jsonrpc.Request):
                    self.respond_error(message.id, jsonrpc.METHOD_NOT_FOUND, "method not found")
            except (ProcessExitedError, TransportTimeout) as exc:
                log.debug("could not answer %s of %s: %s", message.method, self.name, exc)
            except Exception:
                log.exception("callback for %s from %s failed", message.method, self.name)

    def _on_oversize(self, line: jsonrpc.Oversize) -> None:
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

    def _resolve(self, request_id: jsonrpc.RequestId, *, result: Any = None,
                 error: BaseException | None = None) -> None:
        with self._lock:
            # Out of the table once answered: the table is what is still awaited (a caller
            # reads its own answer only while nobody else has one to wait for). A call already
            # failed (closed, timed out) may still be in the table until its thread wakes up:
            # its late answer is an abandoned one too.
            pending = self._pending.pop(request_id, None)
            if pending is not None and pending.settle(result, error):
                return
        log.debug("%s answered unknown or abandoned request %r", self.name, request_id)

    def _on_eof(self) -> None:
        """Stdout is over (the process exited, or closed it): nothing more will answer."""
        self._fail_all(self._exited_error(None))

    def _exited_error(self, cause: BaseException | None) -> ProcessExitedError:
        code = self._process.poll() if self._process is not None else None
        how = f"exited with code {code}" if code is not None and code >= 0 else (
            f"was killed by signal {-code}" if code is not None else
            "closed its stdin while running" if cause is not None else
            "closed its stdout while running")
        return ProcessExitedError(f"local MCP server {self.name!r} {how}", returncode=code,
                                  stderr_tail=self.stderr_tail, server=self.name)

    def _fail_all(self, error: ProcessExitedError) -> None:
        with self._lock:
            if self._exit_error is None:
                self._exit_error = error
            for waiter in self._pending.values():
                # One instance per raiser: their tracebacks differ.
                waiter.settle(None, copy.copy(error))
