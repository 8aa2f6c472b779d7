"""What a GatewayClient owns, kept apart from it: the transport, the executor, the breakers.

Apart, so that ``weakref.finalize`` can release them when the client is garbage-collected or
the interpreter exits without keeping the client alive, and so that a forked child can drop
them wholesale (never close them: they are the parent's) and rebuild lazily.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor

from ._breaker import Breaker
from ._local_pool import LocalServerPool
from .transports.http import HTTPTransport

__all__ = ["Resources"]


class Resources:
    """The resources of one client, with the lock that guards their lazy creation."""

    def __init__(self, local: LocalServerPool) -> None:
        self.lock = threading.Lock()
        self.pid = os.getpid()
        self.transport: HTTPTransport | None = None
        self.executor: ThreadPoolExecutor | None = None
        self.breakers: dict[str, Breaker] = {}
        self.local = local

    def close(self) -> None:
        if self.pid != os.getpid():
            return  # inherited from the parent: not ours to close
        with self.lock:
            executor, transport = self.executor, self.transport
            self.executor = self.transport = None
        if executor is not None:
            # In-flight calls end within their own deadlines; queued ones are cancelled.
            executor.shutdown(wait=True, cancel_futures=True)
        if transport is not None:
            transport.close()
        self.local.close()

    def drop_after_fork(self) -> None:
        self.local.forget_after_fork()
        self.lock = threading.Lock()
        self.pid = os.getpid()
        self.transport = None
        self.executor = None
        self.breakers = {}
