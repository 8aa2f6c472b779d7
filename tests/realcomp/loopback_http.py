"""Serve an ASGI app with uvicorn on loopback, the same way for every official-SDK test server
(mcp_http_server.py, mcp1_http_server.py, mcp_client_server.py).

Each of those is a script run by its own venv's python (the tools venv's for mcp 2.x, the
mcp1 venv's for mcp 1.x), which imports this module as a sibling of the script (the script's
folder comes first on ``sys.path``), never through the tests. So it needs nothing at the top
but the standard library, and imports uvicorn (in both venvs) only when it serves: over stdio,
mcp_client_server.py never imports uvicorn.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
from typing import Any

#: uvicorn's wait for open connections (GET streams) on shutdown, before it cancels them.
GRACEFUL_SHUTDOWN = 0.5


async def serve(uv: Any, sock: socket.socket, url: str) -> None:
    task = asyncio.create_task(uv.serve(sockets=[sock]))
    while not uv.started and not task.done():
        await asyncio.sleep(0.01)
    if uv.started:
        print(f"READY {url}", flush=True)
    await task


def serve_on_loopback(app: Any, path: str, log: logging.Logger) -> None:
    """Serve ``app`` on 127.0.0.1 port 0 until SIGTERM or SIGINT: once uvicorn serves, print
    ``READY http://127.0.0.1:<port><path>`` on stdout (flushed); at the end log ``exiting``."""
    import uvicorn

    # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on sockets whose proto says TCP.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{sock.getsockname()[1]}{path}"
    # lifespan "on": the Streamable HTTP session manager runs in the app's lifespan.
    config = uvicorn.Config(app, http="h11", ws="none", loop="asyncio", lifespan="on",
                            log_config=None, access_log=False,
                            timeout_graceful_shutdown=GRACEFUL_SHUTDOWN)
    uv = uvicorn.Server(config)

    def stop(signum: int, frame: Any) -> None:
        # Before uvicorn takes the signals over (a stop that arrives early), and after:
        # uvicorn raises the signal it caught again, once it has shut down.
        uv.should_exit = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    asyncio.run(serve(uv, sock, url))
    log.info("exiting")
