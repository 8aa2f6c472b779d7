"""Session fixtures for the real components; a pytest plugin loaded by tests/conftest.py.

- ``tools_python`` (``Path``): the tools venv's interpreter, ``<repo>/.tools-venv/bin/python``
  (CPython 3.11). It ensures the venv first, under its lock: built once, up front, by
  ``.ci/run``; built here for local runs when missing or stale. A venv that cannot be built
  fails every test that needs it, with the reason and the command that builds it by hand;
  it is never a skip.
- ``mcp_sdk_server_command`` (``list[str]``): ``[tools_python, <path of mcp_sdk_server.py>]``,
  the command line of the official MCP SDK server over stdio. Shared by the whole session:
  copy it before changing it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from realcomp import tools_venv

#: The MCP SDK server script, run with the tools venv's interpreter.
MCP_SDK_SERVER = Path(__file__).resolve().with_name("mcp_sdk_server.py")


@pytest.fixture(scope="session")
def tools_python() -> Path:
    """The tools venv's python, the venv created or reused first."""
    try:
        return tools_venv.tools_python()
    except tools_venv.ToolsVenvError as exc:
        problem = str(exc)
    # Outside the except block: the message says it all, the chained traceback would not.
    pytest.fail(f"the tools venv is not usable: {problem}", pytrace=False)


@pytest.fixture(scope="session")
def mcp_sdk_server_command(tools_python: Path) -> list[str]:
    """The command that serves tests/realcomp/mcp_sdk_server.py over stdio."""
    return [str(tools_python), str(MCP_SDK_SERVER)]
