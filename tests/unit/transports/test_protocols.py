"""Each transport implements its Protocol of the seam (``sark_sync.transports``), so the
pipeline can drive any of them; built here without opening anything (no socket, no process:
an event stream connects in ``connect()``, a stdio channel starts in ``start()``)."""

from __future__ import annotations

import sys

import pytest

from sark_sync import RetryPolicy, Timeouts
from sark_sync.testing import MockResponse, MockTransport
from sark_sync.transports import (
    EventSource,
    EventStream,
    GatewayTransport,
    HTTPTransport,
    MessageChannel,
    StdioTransport,
)


def test_the_http_transport_and_the_mock_are_gateway_transports() -> None:
    http = HTTPTransport("http://127.0.0.1:9", api_key=None, timeouts=Timeouts(),
                         max_workers=1, user_agent="t")
    try:
        assert isinstance(http, GatewayTransport)
    finally:
        http.close()
    assert isinstance(MockTransport(lambda request: MockResponse()), GatewayTransport)


def test_an_event_stream_is_an_event_source_that_has_not_connected() -> None:
    stream = EventStream("http://127.0.0.1:9", api_key=None, user_token=None, user_agent="t",
                         verify=None, connect_timeout=1.0, types=None, last_event_id=None,
                         idle_timeout=1.0, retry=RetryPolicy(), max_reconnects=0)
    try:
        assert isinstance(stream, EventSource)
        assert stream._response is None and stream.reconnects == 0  # nothing sent yet
    finally:
        stream.close()
    assert stream.closed


def test_a_stdio_transport_is_a_message_channel_that_has_not_started() -> None:
    channel = StdioTransport([sys.executable, "-c", "pass"])
    assert isinstance(channel, MessageChannel)
    assert channel.pid is None and not channel.alive


@pytest.mark.parametrize("other", [object(), "http://127.0.0.1", MockResponse()])
def test_other_objects_are_not_transports(other: object) -> None:
    assert not isinstance(other, (GatewayTransport, EventSource, MessageChannel))
