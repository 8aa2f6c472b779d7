"""Non-blocking reads of a local server's pipes, closing them quietly, and its stderr as a log
and a tail: what the readers of :mod:`._stdio_pipes` share."""

from __future__ import annotations

import collections
import errno
import logging
import os
from collections.abc import Iterator
from typing import Any

from ..wire import jsonrpc

__all__ = ["EXIT_DRAIN_BYTES", "READ_CHUNK", "StderrTail", "close_fd", "close_quietly", "drain",
           "poll_milliseconds", "read_chunk"]

log = logging.getLogger("sark_sync.stdio")

#: Bytes per read from the child's pipes: the size of a pipe's buffer. Larger reads cost more
#: than they save: from 128 KiB, glibc serves each buffer with mmap/munmap, measured here at
#: +40 µs per round trip.
READ_CHUNK = 64 * 1024
#: Lines of stderr kept for error messages.
STDERR_TAIL_LINES = 100
#: Longest stderr line kept whole (a longer one is logged as its size).
STDERR_LINE_BYTES = 64 * 1024
#: After the process exits, at most this much more is read from each pipe: what it wrote
#: before exiting fits in a pipe buffer (<= 1 MiB), and a grandchild holding the pipe may
#: write for ever.
EXIT_DRAIN_BYTES = 1024 * 1024


def drain(fd: int) -> Iterator[bytes]:
    """What is in the pipe now, up to EXIT_DRAIN_BYTES, without waiting for more."""
    left = EXIT_DRAIN_BYTES
    while left > 0:
        chunk = read_chunk(fd)
        if not chunk:
            return
        left -= len(chunk)
        yield chunk


def poll_milliseconds(seconds: float) -> int:
    """A poll() timeout: rounded up, so a wait never ends before its deadline."""
    return max(0, int(seconds * 1000) + 1)


def read_chunk(fd: int) -> bytes | None:
    """A chunk; b"" at EOF (or a closed fd); None when nothing is there yet."""
    try:
        return os.read(fd, READ_CHUNK)
    except BlockingIOError:
        return None
    except OSError as exc:
        if exc.errno in (errno.EBADF, errno.EIO):
            return b""
        raise


def close_quietly(stream: Any) -> None:
    try:
        if stream is not None:
            stream.close()
    except OSError:
        pass


def close_fd(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        pass



class StderrTail:
    """A server's stderr, line by line: logged at INFO on ``sark_sync.stdio``, and its last
    :data:`STDERR_TAIL_LINES` lines kept to explain an exit. Read by its own thread: an
    undrained stderr pipe deadlocks a chatty child after ~64 KiB."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._lines = jsonrpc.LineSplitter(STDERR_LINE_BYTES)
        self._tail: collections.deque[str] = collections.deque(maxlen=STDERR_TAIL_LINES)

    def feed(self, chunk: bytes) -> None:
        """A chunk read from stderr; b"" at its end."""
        for line in self._lines.feed(chunk) if chunk else self._lines.finish():
            text = (line.decode("utf-8", "replace") if isinstance(line, bytes)
                    else f"[a {line.size}-byte line]")
            self._tail.append(text)
            log.info("[%s] %s", self._name, text)

    @property
    def text(self) -> str:
        return "\n".join(self._tail)
