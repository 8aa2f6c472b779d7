"""Fixtures for integration tests: a real LocalGateway on 127.0.0.1 and clients pointed at it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Callable

import pytest
import requests
from support import API_KEY, FAST_RETRY, build_gateway

import sark_sync
from sark_sync.cli._demo_gateway import DemoUsers, issue_users
from sark_sync.cli._demo_gateway import build_gateway as build_demo_gateway
from sark_sync.testing import LocalGateway


@pytest.fixture
def gateway() -> Iterator[LocalGateway]:
    with build_gateway() as gw:
        yield gw


@pytest.fixture
def make_client(gateway: LocalGateway) -> Iterator[Callable[..., sark_sync.GatewayClient]]:
    """A factory of clients for ``gateway``; every client made is closed after the test."""
    made: list[sark_sync.GatewayClient] = []

    def make(**options: Any) -> sark_sync.GatewayClient:
        options.setdefault("api_key", API_KEY)
        options.setdefault("retry", FAST_RETRY)
        client = sark_sync.GatewayClient(options.pop("url", gateway.url), **options)
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()


@pytest.fixture
def client(make_client: Callable[..., sark_sync.GatewayClient]) -> sark_sync.GatewayClient:
    return make_client()


@pytest.fixture
def http() -> Iterator[requests.Session]:
    """A plain requests session for raw calls to a gateway (no proxies from the environment)."""
    with requests.Session() as session:
        session.trust_env = False
        yield session


@pytest.fixture(scope="module")
def demo_gateway() -> Iterator[LocalGateway]:
    """The gateway of ``sark-sync demo`` (policy 'builtin', the demo MCP server over stdio),
    shared by a test module of the CLI."""
    with build_demo_gateway() as gateway:
        yield gateway


@pytest.fixture(scope="module")
def users(demo_gateway: LocalGateway) -> DemoUsers:
    """Tokens of the demo's users (alice the developer, bob the viewer)."""
    return issue_users(demo_gateway)
