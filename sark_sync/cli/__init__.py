"""The ``sark-sync`` command: ``main()`` is its entry point (see ``docs/CLI.md``)."""

from ._main import main

__all__ = ["main"]
