"""The fixture vocabulary of the integration tests: real LocalGateways on 127.0.0.1 and
clients pointed at them. A test file never redefines these under another name.

- ``make_gateway(catalogue="client", **options)``: a started gateway from
  :func:`support.build_gateway` (``support.API_KEY``, ``support.JWT_SECRET``, the servers of
  ``catalogue``: a name of ``support.CATALOGUES`` or a function registering the test's own);
  every gateway made is stopped after the test. A test that needs a special gateway calls it
  with options; a module whose tests all need the same one overrides ``gateway`` with one
  call of it.
- ``gateway``: ``make_gateway()``, the test's gateway.
- ``make_client(url=None, **options)``: clients with ``support.API_KEY`` and fast retries, for
  ``gateway`` unless ``url`` names another server; every client made is closed after the test.
- ``client``: ``make_client()``, a client of ``gateway``.
- ``http``: a plain requests session, for raw calls.
- ``demo_gateway``/``users``: the gateway of ``sark-sync demo`` and its users' tokens (module
  scope, for the CLI tests).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Callable

import pytest
import requests
from support import API_KEY, FAST_RETRY, Catalogue, build_gateway

import sark_sync
from sark_sync.cli._demo_gateway import DemoUsers, issue_users
from sark_sync.cli._demo_gateway import build_gateway as build_demo_gateway
from sark_sync.testing import LocalGateway


@pytest.fixture
def make_gateway() -> Iterator[Callable[..., LocalGateway]]:
    """``make_gateway(catalogue="client", **options)``: a started :func:`support.build_gateway`;
    every gateway made is stopped after the test, the last made first."""
    made: list[LocalGateway] = []

    def make(catalogue: Catalogue = "client", **options: Any) -> LocalGateway:
        gateway = build_gateway(catalogue, **options).start()
        made.append(gateway)
        return gateway

    yield make
    for gateway in reversed(made):
        gateway.stop()


@pytest.fixture
def gateway(make_gateway: Callable[..., LocalGateway]) -> LocalGateway:
    """The test's gateway: the ``"client"`` catalogue of :func:`support.build_gateway`."""
    return make_gateway()


@pytest.fixture
def make_client(gateway: LocalGateway) -> Iterator[Callable[..., sark_sync.GatewayClient]]:
    """``make_client(url=None, **options)``: a client with ``support.API_KEY`` and fast
    retries, of ``url`` or else of ``gateway``; every client made is closed after the test
    (before ``gateway`` stops)."""
    made: list[sark_sync.GatewayClient] = []

    def make(url: str | None = None, **options: Any) -> sark_sync.GatewayClient:
        options.setdefault("api_key", API_KEY)
        options.setdefault("retry", FAST_RETRY)
        client = sark_sync.GatewayClient(gateway.url if url is None else url, **options)
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()


@pytest.fixture
def client(make_client: Callable[..., sark_sync.GatewayClient]) -> sark_sync.GatewayClient:
    """A client of ``gateway``, closed after the test."""
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
