"""The stdio transport: one local MCP server process, newline-delimited JSON-RPC over pipes.

Lifecycle, and why every step is bounded (the process, its pipes and its reader threads live
in ``_stdio_pipes``; the shutdown ladder and the background reaper in ``_stdio_process``):

- **Spawn** in its own process group (so shutdown reaches any grandchildren),
  ``close_fds=True``, and an environment built from an allow-list: the
  parent's secrets are not the server's business.
- **Read**: one reader thread owns stdout, but lends it to a caller waiting for its answer
  while nobody else reads (one wake-up per call instead of two: ``_stdio_baton``); an
  answer that is one whole line is taken in place, without the table of calls. Whoever
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

import copy
import itertools
import logging
import os
import time
from collections.abc import Mapping, Sequence
from select import PIPE_BUF
from typing import Any, Callable

from .._exceptions import (
    ProcessExitedError,
    TransportTimeout,
)
from .._validation import validate_command, validate_env
from ..resilience import cancelled_error, cancels, current_cancellation, sent_reason, tell_cancelled
from ..wire import jsonrpc
from ._stdio_calls import CallTable, PendingCall, encode_failure, encode_message
from ._stdio_io import StderrTail
from ._stdio_pipes import ProcessClosed, ServerProcess
from ._stdio_process import (
    ENV_ALLOW_LIST,
    KILL_TIMEOUT,
    STDIN_CLOSE_TIMEOUT,
    TERMINATE_TIMEOUT,
    child_environment,
)

__all__ = ["ENV_ALLOW_LIST", "KILL_TIMEOUT", "STDIN_CLOSE_TIMEOUT", "TERMINATE_TIMEOUT",
           "StdioTransport", "child_environment"]

log = logging.getLogger("sark_sync.stdio")

#: Longest a write to the child's stdin may block when the caller gives no deadline.
WRITE_TIMEOUT = 10.0


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
        self._ids = itertools.count(1)
        self._calls = CallTable(self.name, max_line_bytes, on_request, on_notification,
                                self.respond_error)
        self._stderr = StderrTail(self.name)
        self._proc: ServerProcess | None = None
        self._owner_pid = os.getpid()

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        """Spawn the process and its reader threads; :class:`ProcessStartError` if it cannot."""
        self._proc = ServerProcess(
            self.command, name=self.name, env=self._env, cwd=self._cwd,
            on_stdout=self._calls.feed, on_stderr=self._stderr.feed, on_stdout_end=self._on_eof,
            awaited=self._calls.pending.__len__)
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
        return self._proc is not None and self._calls.exit_error is None and \
            self._proc.process.poll() is None

    @property
    def stderr_tail(self) -> str:
        return self._stderr.text

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
        self._calls.fail_all(ProcessExitedError(
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
        token = current_cancellation() if method == "tools/call" else None
        deadline = time.monotonic() + timeout  # below: only a call with a token can be cancelled
        pending: PendingCall | None = None
        proc, calls = self._proc, self._calls
        if token is None and proc is not None and calls.exit_error is None \
                and len(line) <= PIPE_BUF:  # (a server known gone gets nothing written)
            chunk = proc.exchange(line, deadline)
            if chunk is not None:  # sent, and the pipe is ours until give_pipe()
                try:
                    answered, outcome = calls.own_answer(chunk, request_id) if chunk else \
                        (False, None)
                    if answered:
                        return outcome
                    pending = self._answer_here(proc, chunk, outcome, request_id, deadline)
                finally:
                    proc.give_pipe()
        sent = pending is not None
        pending = pending or calls.enlist(request_id)
        cancelled = None if token is None else cancelled_error(self.name, method, token)
        try:
            if not sent:  # a timeout here: not sent (whole), nothing to cancel
                written = self._write(line, timeout)
                if token is None and written.take_pipe():  # nobody reads: read here (one wake-up)
                    try:
                        self._read_here(written, pending, deadline)
                    finally:
                        written.give_pipe()
            if token is None:
                answered = pending.done or pending.wait(deadline - time.monotonic())
            else:
                with cancels(token, lambda: calls.resolve(request_id, error=cancelled)):
                    answered = pending.wait(deadline - time.monotonic())
            if token is not None and cancelled is not None and pending.error is cancelled:
                self._cancel(request_id, sent_reason(cancelled, token))  # the token fired
            elif not answered:
                self._cancel(request_id, "timeout")
                raise TransportTimeout(
                    f"local MCP server {self.name!r} did not answer {method} within "
                    f"{timeout:.3g}s", server=self.name)
        finally:
            calls.forget(request_id)
        if pending.error is not None:
            raise pending.error
        return pending.result

    def _answer_here(self, proc: ServerProcess, chunk: bytes, message: Any, request_id: int,
                     deadline: float) -> PendingCall:
        """Holding the pipe, after ``chunk`` (``message`` if parsed) was not the answer to
        ``request_id``: the call goes in the table (nobody read its answer: we hold the
        pipe), the chunk is dispatched, and reading goes on here until its answer."""
        pending = self._calls.enlist(request_id)
        try:
            if message is not None:
                self._calls.handle(message)
            elif chunk:
                self._calls.feed(chunk)
            if chunk:
                self._read_here(proc, pending, deadline)
        except BaseException:
            self._calls.forget(request_id)
            raise
        return pending

    def _read_here(self, proc: ServerProcess, pending: PendingCall, deadline: float) -> None:
        """Holding the pipe: read stdout until ``pending`` is answered or ``deadline``."""
        while not pending.done:
            chunk = proc.next_chunk(deadline)
            if chunk is None:
                return  # the deadline, or EOF, exit, close: the reader thread's to handle
            self._calls.feed(chunk)

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
                self._calls.fail_all(ProcessExitedError(
                    f"local MCP server {self.name!r} stopped reading its stdin in the middle "
                    "of a message; start it again", server=self.name))
            raise
        except ProcessClosed:
            with self._calls.lock:
                error = self._calls.exit_error
            raise copy.copy(error) if error is not None else ProcessExitedError(
                f"local MCP server {self.name!r} was closed", server=self.name) from None
        except OSError as exc:  # EPIPE: it closed its stdin, or exited
            error = self._exited_error(exc)
            self._calls.fail_all(error)  # it cannot be used any more: no longer alive
            raise error from exc

    # -- reading -------------------------------------------------------------------------------

    def _on_eof(self) -> None:
        """Stdout is over (the process exited, or closed it): nothing more will answer."""
        self._calls.fail_all(self._exited_error(None))

    def _exited_error(self, cause: BaseException | None) -> ProcessExitedError:
        code = self._process.poll() if self._process is not None else None
        how = f"exited with code {code}" if code is not None and code >= 0 else (
            f"was killed by signal {-code}" if code is not None else
            "closed its stdin while running" if cause is not None else
            "closed its stdout while running")
        return ProcessExitedError(f"local MCP server {self.name!r} {how}", returncode=code,
                                  stderr_tail=self.stderr_tail, server=self.name)
