"""A stdio MCP server with a side effect a test can count: ``open_ticket`` appends its title
to the file named by ``TICKETS_FILE`` and answers ``T-<number of lines>``.

``python ticket_server.py``: the demo MCP server (sark_sync.testing.demo_server, every tool
of it) plus ``open_ticket``, which is annotated neither read-only nor idempotent, so that
running it twice is visible: two lines in the file. Used to show that the gateway's
Idempotency-Key deduplication keeps a re-run ``sark-sync invoke`` from opening a second
ticket on a hosted stdio server.
"""

from __future__ import annotations

import os
import sys
from typing import IO, Any

from sark_sync.testing.stdio._demo_server import DemoServer, Result, _text, _tool

#: The variable naming the file of opened tickets, one title per line.
ENV_FILE = "TICKETS_FILE"


class TicketServer(DemoServer):
    """The demo server and its ``open_ticket`` tool."""

    def __init__(self, stdin: IO[bytes], stdout: IO[bytes]) -> None:
        super().__init__(stdin, stdout)
        self.tools.append(_tool("open_ticket", "Open a ticket (a side effect: one line).",
                                {"title": {"type": "string"}}, ["title"],
                                destructiveHint=True))
        self._names.add("open_ticket")

    def _tool_open_ticket(self, args: dict[str, Any], *_: Any) -> Result:
        title = args.get("title")
        if not isinstance(title, str):
            return _text("title must be a string", error=True)
        with open(os.environ[ENV_FILE], "a+", encoding="utf-8") as tickets:
            tickets.write(" ".join(title.split()) + "\n")
            tickets.seek(0)
            number = len(tickets.readlines())
        return _text(f"T-{number}")


def main() -> int:
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # only protocol lines may reach the real stdout
    return TicketServer(stdin, stdout).serve()


if __name__ == "__main__":
    sys.exit(main())
