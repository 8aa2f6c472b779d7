"""Fixtures of the hostile-peer tests: a misbehaving peer of tests/hostile/ and a client
pointed at it, both stopped after the test."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Callable

import pytest
from hostile.http_peer import HostilePeer
from support import API_KEY, FAST_RETRY

import sark_sync

Start = Callable[..., "tuple[HostilePeer, sark_sync.GatewayClient]"]


@pytest.fixture
def peer_client() -> Iterator[Start]:
    """``peer_client(handler, **client_options)`` starts a :class:`HostilePeer` running the
    script ``handler`` and a client for it (``retry`` defaults to short pauses)."""
    opened: list[Any] = []

    def start(handler: Any, **options: Any) -> tuple[HostilePeer, sark_sync.GatewayClient]:
        peer = HostilePeer(handler)
        opened.append(peer)
        options.setdefault("retry", FAST_RETRY)
        client = sark_sync.GatewayClient(peer.url, api_key=API_KEY, **options)
        opened.append(client)
        return peer, client

    yield start
    for thing in reversed(opened):
        thing.close() if isinstance(thing, sark_sync.GatewayClient) else thing.stop()
