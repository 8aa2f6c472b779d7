"""What a GatewayClient owns, kept apart from it: the gateway transport, the executor, the
breakers, the local servers and the open event streams.

Apart, so that ``weakref.finalize`` can release them when the client is garbage-collected or
the interpreter exits without keeping the client alive, and so that a forked child can drop
them wholesale (never close them: they are the parent's) and rebuild lazily.
"""

from __future__ import annotations

import os
import threading
import weakref
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

from .._config import BreakerPolicy
from ..resilience import Breaker
from ..transports import EventStream, GatewayTransport, LocalServerPool, RemoteServerPool

__all__ = ["Resources"]


class Resources:
    """The resources of one client, with the lock that guards their lazy creation."""

    def __init__(self, local: LocalServerPool, remote: RemoteServerPool) -> None:
        self.lock = threading.Lock()
        self.pid = os.getpid()
        self.transport: GatewayTransport | None = None
        self.executor: ThreadPoolExecutor | None = None
        self.breakers: dict[str, Breaker] = {}
        self.local = local
        self.remote = remote
        self.streams: weakref.WeakSet[EventStream] = weakref.WeakSet()

    def gateway(self, build: Callable[[], GatewayTransport], check: Callable[[], None]
                ) -> GatewayTransport:
        """The gateway transport, built on first use in this process (``check`` raises if the
        client closed)."""
        transport = self.transport
        if transport is None:
            with self.lock:
                check()
                if self.transport is None:
                    self.transport = build()
                transport = self.transport
        return transport

    def executor_for(self, max_workers: int, check: Callable[[], None]) -> ThreadPoolExecutor:
        """The thread pool of ``submit``/``invoke_many``, started on first use."""
        executor = self.executor
        if executor is None:
            with self.lock:
                check()
                if self.executor is None:
                    self.executor = ThreadPoolExecutor(
                        max_workers=max_workers, thread_name_prefix="sark-sync")
                executor = self.executor
        return executor

    def track(self, stream: EventStream) -> None:
        """Remember an open stream (weakly), to close it with the client."""
        with self.lock:
            self.streams.add(stream)

    def breaker(self, name: str, policy: BreakerPolicy) -> Breaker:
        """The breaker called ``name``, made on first use."""
        breaker = self.breakers.get(name)
        if breaker is None:
            with self.lock:
                breaker = self.breakers.setdefault(name, Breaker(name, policy))
        return breaker

    def close(self) -> None:
        if self.pid != os.getpid():
            return  # inherited from the parent: not ours to close
        with self.lock:
            executor, transport = self.executor, self.transport
            self.executor = self.transport = None
            streams = list(self.streams)
            self.streams = weakref.WeakSet()
        for stream in streams:
            stream.close()
        if executor is not None:
            # In-flight calls end within their own deadlines; queued ones are cancelled.
            executor.shutdown(wait=True, cancel_futures=True)
        if transport is not None:
            transport.close()
        self.local.close()
        self.remote.close()

    def drop_after_fork(self) -> None:
        self.local.forget_after_fork()
        self.remote.forget_after_fork()
        for stream in list(self.streams):
            stream.close()  # in the child, only forgets the parent's connection
        self.streams = weakref.WeakSet()
        self.lock = threading.Lock()
        self.pid = os.getpid()
        self.transport = None
        self.executor = None
        self.breakers = {}
