"""The LocalGateway's hosted stdio servers against a server that lingers: a restart never
waits for the dead server's shutdown ladder, and closing the gateway still reaps it."""

from __future__ import annotations

import time

import pytest
import requests
from hostile.stdio_peer import peer_command
from support import API_KEY, build_gateway

pytestmark = pytest.mark.timeout(60)


def invoke(url: str, timeout: float = 10) -> requests.Response:
    with requests.Session() as session:
        session.trust_env = False
        return session.post(url + "/api/v1/invoke", headers={"X-API-Key": API_KEY},
                            json={"server": "linger", "tool": "echo", "parameters": {"n": 1}},
                            timeout=timeout)


def test_a_restart_does_not_wait_for_a_server_that_closed_stdout_and_ignores_sigterm() -> None:
    gateway = build_gateway()
    gateway.add_stdio_server("linger", peer_command("stdout_closed_ignore_term", "--on-call"),
                             call_timeout=5)
    with gateway:
        first = invoke(gateway.url)  # the server closes its stdout: a crash for the gateway
        assert first.status_code == 502
        started = time.monotonic()
        second = invoke(gateway.url)  # restarts it; the lingering one is left to the reaper
        elapsed = time.monotonic() - started
        assert second.status_code == 502  # the new process misbehaves the same way
        # The old ladder (stdin, 2 s, SIGTERM ignored, 2 s, SIGKILL) is not waited for.
        assert elapsed < 1.5
        closing = time.monotonic()
    # Closing the gateway waits (bounded) for both ladders: the leak guard sees no child.
    assert time.monotonic() - closing < 10
