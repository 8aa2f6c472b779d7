"""The page of ``sark-sync demo``: numbered steps, indented prose, code and tables.

Every step of the tour (:mod:`._demo` for governance, :mod:`._demo_resilience` for
resilience) writes through one :class:`Tour` and raises :class:`DemoError` when what it shows
did not happen, so the steps share this module and never import each other.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from typing import TextIO

from .._models import ToolResult
from ._output import table

__all__ = ["WIDTH", "DemoError", "Tour"]

#: Columns of the tour's text (tables and code are not wrapped).
WIDTH = 92


class DemoError(Exception):
    """A step did not behave as the tour says it does."""


class Tour:
    """Numbered steps, indented text and tables on one output stream. A step's text is
    indented as far as its number and dot, so that it lines up under the title's first word
    (3 columns under "9. ", 4 under "10. ")."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.step = 0
        self.indent = "   "

    def title(self, text: str) -> None:
        self.step += 1
        number = f"{self.step}. "
        self.indent = " " * len(number)
        self.out.write(f"\n{number}{text}\n")

    def say(self, text: str = "", *, wrap: bool = True) -> None:
        """One indented line; a long one is wrapped, its continuation indented further."""
        if not text:
            self.out.write("\n")
            return
        lines = textwrap.wrap(text, WIDTH, subsequent_indent="    ",
                              break_on_hyphens=False) if wrap else [text]
        for line in lines:
            self.out.write(f"{self.indent}{line}\n")

    def code(self, *lines: str) -> None:
        """Python as typed at a prompt: ``>>>`` then ``...`` for continuation lines."""
        for index, line in enumerate(lines):
            self.say(f"{'>>>' if index == 0 else '...'} {line}", wrap=False)

    def table(self, headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
        for line in table(headers, rows).splitlines():
            self.say(line, wrap=False)

    def result(self, result: ToolResult) -> None:
        shown = result.structured if result.structured is not None else result.text
        flag = "tool error: " if result.is_error else ""
        attempts = "1 attempt" if result.attempts == 1 else f"{result.attempts} attempts"
        self.say(f"{flag}{shown!r}   ({result.latency_ms:.1f} ms, {attempts})")
