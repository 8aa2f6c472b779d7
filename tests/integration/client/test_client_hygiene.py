"""Secrets never show, and a closed client leaves nothing behind."""

from __future__ import annotations

import gc
import logging
import os
import threading
from typing import Callable

import pytest
from support import API_KEY, wait_for

import sark_sync
from sark_sync.testing import Fault, LocalGateway

Make = Callable[..., sark_sync.GatewayClient]

SECRET_VALUES = ("hunter2-password-value", "tok-abcdef-sensitive", "nested-api-key-value")


def test_no_secret_reaches_logs_exceptions_or_reprs(
    make_client: Make, gateway: LocalGateway, caplog: pytest.LogCaptureFixture
) -> None:
    token = gateway.issue_token(subject="alice", roles=("developer",))
    secrets = (API_KEY, token, *SECRET_VALUES)
    parameters = {"query": "SELECT 1", "password": SECRET_VALUES[0], "token": SECRET_VALUES[1],
                  "options": {"api_key": SECRET_VALUES[2]}}
    shown: list[str] = []
    with caplog.at_level(logging.DEBUG):
        client = make_client(retry=sark_sync.RetryPolicy(attempts=2, backoff_base=0))
        shown.append(repr(client))
        result = client.invoke_tool("demo", "echo", parameters, user_token=token)
        shown += [repr(result), str(result)]
        gateway.add_fault(Fault(status=503, times=2))
        gateway.add_fault(Fault(path="/api/v1/servers", status=401))
        gateway.add_fault(Fault(delay=3.0))
        for call in (
            lambda: client.invoke_tool("demo", "echo", parameters, user_token=token),
            lambda: client.list_servers(),
            lambda: client.invoke_tool("demo", "echo", parameters, user_token=token, timeout=0.3),
            lambda: make_client(api_key="wrong-" + API_KEY).list_servers(),
        ):
            with pytest.raises(sark_sync.GatewayError) as caught:
                call()
            shown += [str(caught.value), repr(caught.value), repr(caught.value.__dict__)]
        call_repr = repr(sark_sync.ToolCall("demo", "echo", parameters, user_token=token))
        shown.append(call_repr)
    shown += [record.getMessage() for record in caplog.records]
    shown += [str(record.args) for record in caplog.records]
    assert len(caplog.records) > 5  # DEBUG logging really was on
    leaked = [(secret, text) for text in shown for secret in secrets if secret in text]
    assert leaked == []


def _fds() -> set[str]:
    found = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            found.add(f"{fd}->{os.readlink(f'/proc/self/fd/{fd}')}")
        except OSError:
            pass
    return found


def test_close_releases_every_thread_socket_and_fd(make_client: Make, gateway: LocalGateway
                                                   ) -> None:
    threads_before = set(threading.enumerate())
    fds_before = _fds()
    client = make_client(max_workers=4)
    client.invoke_many([sark_sync.ToolCall("demo", "echo", {"n": n}) for n in range(20)])
    client.submit("other", "ping").result(timeout=10)
    client.list_servers()
    assert set(threading.enumerate()) - threads_before  # the executor really ran
    client.close()
    # Only the gateway's own handler threads and sockets for the closed connections may
    # linger a moment; the client's must be gone at once.
    client_threads = [t for t in threading.enumerate() if t.name.startswith("sark-sync")]
    assert client_threads == []
    wait_for(lambda: not (_fds() - fds_before or gateway.open_connections), timeout=3,
               what=lambda: f"the fds and connections to close: new fds "
                               f"{_fds() - fds_before}, {gateway.open_connections} open")
    with pytest.raises(sark_sync.ClientClosedError):
        client.list_servers()


def test_garbage_collected_client_releases_its_connections(gateway: LocalGateway) -> None:
    fds_before = _fds()
    client = sark_sync.GatewayClient(gateway.url, api_key=API_KEY)
    client.list_servers()
    del client
    gc.collect()
    wait_for(lambda: not _fds() - fds_before, timeout=3,
               what=lambda: f"the fds to close: new fds {_fds() - fds_before}")
