"""Bad responses become typed GatewayErrors with useful messages, never a crash or a hang."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable

import pytest
from support import API_KEY

import sark_sync
from sark_sync.testing import Fault, LocalGateway

Make = Callable[..., sark_sync.GatewayClient]
NO_RETRY = sark_sync.RetryPolicy(attempts=1)


def test_non_json_body_raises_protocol_error(make_client: Make, gateway: LocalGateway) -> None:
    client = make_client(retry=NO_RETRY)
    gateway.add_fault(Fault(path="/api/v1/servers", body=b"<html>oops</html>",
                            content_type="application/json"))
    with pytest.raises(sark_sync.ProtocolError) as caught:
        client.list_servers()
    assert "not valid JSON" in str(caught.value)
    assert "<html>oops</html>" in str(caught.value)
    assert caught.value.status_code == 200


def test_wrong_content_type_raises_protocol_error(make_client: Make, gateway: LocalGateway
                                                  ) -> None:
    client = make_client(retry=NO_RETRY)
    gateway.add_fault(Fault(path="/api/v1/servers", content_type="text/html"))
    with pytest.raises(sark_sync.ProtocolError) as caught:
        client.list_servers()
    assert "text/html" in str(caught.value)


def test_truncated_body_raises_protocol_error(make_client: Make, gateway: LocalGateway) -> None:
    client = make_client(retry=NO_RETRY)
    gateway.add_fault(Fault(path="/api/v1/servers", truncate=True))
    with pytest.raises(sark_sync.ProtocolError) as caught:
        client.list_servers()
    assert "cut short" in str(caught.value)


def test_oversize_response_raises_protocol_error(make_client: Make, gateway: LocalGateway
                                                 ) -> None:
    client = make_client(retry=NO_RETRY, max_response_bytes=10_000)
    gateway.add_fault(Fault(path="/api/v1/servers", body=b"[" + b"0," * 20_000 + b"0]",
                            content_type="application/json"))
    with pytest.raises(sark_sync.ProtocolError) as caught:
        client.list_servers()
    assert "10000-byte limit" in str(caught.value)


def test_listing_without_its_list_raises_protocol_error(make_client: Make,
                                                        gateway: LocalGateway) -> None:
    client = make_client(retry=NO_RETRY)
    gateway.add_fault(Fault(path="/api/v1/servers", body=b'{"total": 3}',
                            content_type="application/json"))
    with pytest.raises(sark_sync.ProtocolError) as caught:
        client.list_servers()
    assert "'servers' list" in str(caught.value)


def test_malformed_invoke_result_raises_protocol_error(make_client: Make,
                                                       gateway: LocalGateway) -> None:
    client = make_client(retry=NO_RETRY)
    gateway.add_fault(Fault(body=b'{"result": {"content": "not a list"}}',
                            content_type="application/json"))
    with pytest.raises(sark_sync.ProtocolError) as caught:
        client.invoke_tool("demo", "echo")
    assert "result.content" in str(caught.value)
    assert caught.value.server == "demo" and caught.value.tool == "echo"


def test_error_status_with_a_non_json_body_still_maps_to_its_class(
    make_client: Make, gateway: LocalGateway
) -> None:
    client = make_client(retry=NO_RETRY)
    gateway.add_fault(Fault(path="/api/v1/servers", status=502, body=b"Bad Gateway",
                            content_type="text/plain"))
    with pytest.raises(sark_sync.UpstreamError) as caught:
        client.list_servers()
    assert caught.value.status_code == 502 and caught.value.code is None


class _Redirector(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    target = ""

    def do_GET(self) -> None:
        self.send_response(302)
        self.send_header("Location", self.target + self.path)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def redirector(gateway: LocalGateway) -> Iterator[str]:
    handler = type("Handler", (_Redirector,), {"target": gateway.url.replace("127.0.0.1",
                                                                              "localhost")})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_api_key_is_never_sent_to_another_host_on_redirect(
    make_client: Make, gateway: LocalGateway, redirector: str
) -> None:
    client = make_client(url=redirector)
    with pytest.raises(sark_sync.APIError) as caught:
        client.list_servers()
    assert caught.value.status_code == 302
    assert "does not follow redirects" in str(caught.value)
    assert gateway.requests == []
    assert API_KEY not in str(caught.value)
