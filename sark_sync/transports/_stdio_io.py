"""Non-blocking reads of a local server's pipes, and closing them quietly: what the reader
thread and a caller reading its own answer share (:mod:`._stdio_pipes`)."""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from typing import Any

__all__ = ["EXIT_DRAIN_BYTES", "READ_CHUNK", "close_fd", "close_quietly", "drain",
           "poll_milliseconds", "read_chunk"]

#: Bytes per read from the child's pipes: the size of a pipe's buffer. Larger reads cost more
#: than they save: from 128 KiB, glibc serves each buffer with mmap/munmap, measured here at
#: +40 µs per round trip.
READ_CHUNK = 64 * 1024
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
