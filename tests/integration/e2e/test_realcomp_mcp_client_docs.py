"""Every ```python block of docs/gateway/MCP_CLIENT.md runs against the official MCP server.

The page's blocks are marked ``<!-- no-run -->`` for tests/integration/e2e/test_docs.py (which
then only compiles them): they need a real server. Here they run, in order, in one namespace
(a later block uses what an earlier one defined) where ``command`` is the command line of
tests/realcomp/mcp_client_server.py over stdio and ``url`` its Streamable HTTP endpoint, as the
page says. As in test_docs.py, every ``# -> text`` comment must match a whole line the block
printed, in order; a block must end within ``BLOCK_TIME_LIMIT`` seconds, and leave nothing
running (the leak guard of tests/integration).
"""

from __future__ import annotations

import contextlib
import io
import re
import time
import traceback
from pathlib import Path

import pytest
from realcomp.client_fixtures import McpClientHttpServer

pytestmark = pytest.mark.realcomp

PAGE = Path(__file__).resolve().parents[3] / "docs" / "gateway" / "MCP_CLIENT.md"
#: Seconds one block may take (a block starts a server or two: about a second each).
BLOCK_TIME_LIMIT = 30.0

_FENCE_OPEN = re.compile(r"^```python[ \t]*$")
_FENCE_CLOSE = re.compile(r"^```[ \t]*$")
_SHOWN_OUTPUT = re.compile(r"#\s*->\s?(?P<text>.*)$")


def python_blocks(path: Path) -> list[tuple[int, str]]:
    """(first line number, source) of each ```python block of ``path``."""
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks = []
    index = 0
    while index < len(lines):
        if not _FENCE_OPEN.match(lines[index]):
            index += 1
            continue
        end = index + 1
        while end < len(lines) and not _FENCE_CLOSE.match(lines[end]):
            end += 1
        blocks.append((index + 2, "\n".join(lines[index + 1:end]) + "\n"))
        index = end + 1
    return blocks


def shown_output(source: str) -> list[str]:
    return [m.group("text").rstrip() for m in map(_SHOWN_OUTPUT.search, source.splitlines())
            if m]


def test_the_page_has_examples() -> None:
    blocks = python_blocks(PAGE)
    assert len(blocks) >= 10
    assert all(shown_output(source) for _, source in blocks), "every example shows its output"


def test_every_example_runs_and_prints_what_it_shows(
        mcp_client_stdio_command: list[str], mcp_client_http_server: McpClientHttpServer) -> None:
    namespace: dict[str, object] = {"__name__": "docs:MCP_CLIENT.md",
                                    "command": list(mcp_client_stdio_command),
                                    "url": mcp_client_http_server.url}
    for line, source in python_blocks(PAGE):
        where = f"docs/gateway/MCP_CLIENT.md:{line}"
        code = compile("\n" * (line - 1) + source, str(PAGE), "exec")
        printed = io.StringIO()
        started = time.monotonic()
        try:
            with contextlib.redirect_stdout(printed):
                exec(code, namespace)
        except Exception:
            pytest.fail(f"{where}: block raised\n{traceback.format_exc()}\nprinted:\n"
                        f"{printed.getvalue()}", pytrace=False)
        elapsed = time.monotonic() - started
        assert elapsed < BLOCK_TIME_LIMIT, f"{where}: block took {elapsed:.1f}s"
        lines = iter(text.rstrip() for text in printed.getvalue().splitlines())
        for expected in shown_output(source):
            if not any(text == expected for text in lines):
                pytest.fail(f"{where}: the block shows '# -> {expected}' but did not print it "
                            f"(in this order). It printed:\n{printed.getvalue()}", pytrace=False)
