"""The bounds that docs/gateway/ERROR_HANDLING.md promises are the values in the code.

Each row of the tables in "Bounds: what a hostile peer or a wrong argument can cost" names a
constant (``sark_sync.module.NAME``) and shows its value as a Python literal in a code span;
this test imports every named constant and compares. A bound changed in one place only fails
here. The behaviour behind each bound is pinned by the hostile-peer tests.
"""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[2] / "docs" / "gateway" / "ERROR_HANDLING.md"
SECTION = "## Bounds: what a hostile peer or a wrong argument can cost"
ROW = re.compile(r"^\|(?P<what>[^|]+)\|\s*`(?P<value>[^`]+)`[^|]*"
                 r"\|\s*`(?P<constant>sark_sync\.[\w.]+)`\s*\|$")


def documented_rows() -> list[tuple[str, str, str]]:
    text = DOC.read_text(encoding="utf-8")
    start = text.index(SECTION)
    end = text.index("\n## ", start + len(SECTION))
    rows = []
    for line in text[start:end].splitlines():
        match = ROW.match(line.strip())
        if match:
            rows.append((match["what"].strip(), match["value"], match["constant"]))
    return rows


def test_the_section_documents_every_kind_of_bound() -> None:
    constants = {constant for _, _, constant in documented_rows()}
    assert len(constants) >= 30
    for needed in ("sark_sync.resilience._watchdog.DEADLINE_MARGIN",
                   "sark_sync.wire._sse.MAX_RETRY_MS",
                   "sark_sync.wire._pagination.MAX_PAGES", "sark_sync._config.MAX_WORKERS",
                   "sark_sync._config.MAX_SECONDS",
                   "sark_sync._validation.MAX_HEADER_VALUE_LENGTH"):
        assert needed in constants


@pytest.mark.parametrize(("what", "value", "constant"), documented_rows(),
                         ids=[row[2] for row in documented_rows()])
def test_a_documented_bound_is_the_value_in_the_code(what: str, value: str,
                                                     constant: str) -> None:
    module_name, _, name = constant.rpartition(".")
    actual = getattr(importlib.import_module(module_name), name)
    assert actual == ast.literal_eval(value), f"{what}: the docs say {value}, the code {actual!r}"
    assert type(actual) is type(ast.literal_eval(value)), f"{constant}: int vs float"
