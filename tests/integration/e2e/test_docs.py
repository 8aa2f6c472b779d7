"""Every ```python block of the docs and the README runs, and every relative link resolves.

The blocks of one Markdown file run in order in one namespace (a later block may use the
names an earlier one defined); each file starts from a fresh namespace and is one test id.
A block preceded, on the line just before its fence, by ``<!-- no-run -->`` is compiled but
not executed: that is for snippets that need a real gateway or a framework that is not
installed here.

What a block shows as output must be what it prints: every ``# -> text`` comment in a block
must match a whole line the block printed, in the same order. A block must finish within
``BLOCK_TIME_LIMIT`` seconds; and, since this is an integration test, the autouse leak checker
(tests/conftest.py) fails the file if a block leaves a gateway, a client or a thread running.

Relative links must point to existing files, and their anchors to existing headings. The
exception tree of docs/gateway/ERROR_HANDLING.md must be the one drawn in the docstring of
sark_sync/_exceptions.py, and name every exception sark_sync exports.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
DOC_FILES = sorted(ROOT.glob("docs/**/*.md")) + [p for p in [ROOT / "README.md"] if p.exists()]
NO_RUN = "<!-- no-run -->"
#: Seconds one block may take; docs examples use fast retry policies and short deadlines.
BLOCK_TIME_LIMIT = 5.0

_FENCE_OPEN = re.compile(r"^(?P<indent>[ \t]*)```python[ \t]*$")
_FENCE_CLOSE = re.compile(r"^[ \t]*```[ \t]*$")
_SHOWN_OUTPUT = re.compile(r"#\s*->\s?(?P<text>.*)$")
_LINK = re.compile(r"!?\[[^\]]*\]\((?P<target>[^)\s]+)(?:\s+\"[^\"]*\")?\)")
_ANY_FENCE = re.compile(r"^[ \t]*(```|~~~)")


@dataclass(frozen=True)
class Block:
    path: Path
    line: int  # 1-based line number of the block's first code line
    source: str
    run: bool

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"

    def compile(self) -> object:
        # Padding puts tracebacks on the block's real line numbers in the Markdown file.
        return compile("\n" * (self.line - 1) + self.source, str(self.path), "exec")

    def shown_output(self) -> list[str]:
        shown = []
        for line in self.source.splitlines():
            match = _SHOWN_OUTPUT.search(line)
            if match:
                shown.append(match.group("text").rstrip())
        return shown


def python_blocks(path: Path) -> list[Block]:
    """The ```python blocks of a Markdown file, dedented to their fence's indentation."""
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks: list[Block] = []
    index = 0
    while index < len(lines):
        opening = _FENCE_OPEN.match(lines[index])
        if not opening:
            index += 1
            continue
        indent = len(opening.group("indent"))
        run = index == 0 or lines[index - 1].strip() != NO_RUN
        start = index + 1
        end = start
        while end < len(lines) and not _FENCE_CLOSE.match(lines[end]):
            end += 1
        if end == len(lines):
            pytest.fail(f"{path.relative_to(ROOT)}:{index + 1}: unclosed ```python fence",
                        pytrace=False)
        body = "\n".join(line[indent:] for line in lines[start:end]) + "\n"
        blocks.append(Block(path, start + 1, body, run))
        index = end + 1
    return blocks


def _prose_lines(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, line) of a Markdown file, code blocks left out."""
    in_code = False
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if _ANY_FENCE.match(line):
            in_code = not in_code
        elif not in_code:
            yield number, line


def relative_links(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, target) of every relative link (anchors in the page included)."""
    for number, line in _prose_lines(path):
        for match in _LINK.finditer(line):
            target = match.group("target")
            if not re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:", target):  # http:, mailto: ...
                yield number, target


def anchors(path: Path) -> set[str]:
    """The anchors GitHub makes of a file's headings: lower case, punctuation dropped,
    spaces as hyphens."""
    found = set()
    for _, line in _prose_lines(path):
        heading = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if heading:
            text = heading.group(1).strip().lower()
            found.add(re.sub(r"[^\w\- ]", "", text).replace(" ", "-"))
    return found


def _doc_id(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


@pytest.fixture
def _restore_environ() -> Iterator[None]:
    """Docs may set SARK_GATEWAY_URL and friends; the rest of the suite must not see them."""
    saved = dict(os.environ)
    yield
    for key in set(os.environ) - set(saved):
        del os.environ[key]
    for key, value in saved.items():
        if os.environ.get(key) != value:
            os.environ[key] = value


def test_docs_exist() -> None:
    names = {_doc_id(p) for p in DOC_FILES}
    assert {"docs/index.md", "docs/quickstart.md", "docs/gateway/ERROR_HANDLING.md"} <= names


@pytest.mark.usefixtures("_restore_environ")
@pytest.mark.parametrize("path", DOC_FILES, ids=_doc_id)
def test_python_blocks_run(path: Path) -> None:
    namespace: dict[str, object] = {"__name__": f"docs:{_doc_id(path)}"}
    for block in python_blocks(path):
        try:
            code = block.compile()
        except SyntaxError as exc:
            pytest.fail(f"{block.where}: block does not compile: {exc}", pytrace=False)
        if not block.run:
            continue
        printed = io.StringIO()
        started = time.monotonic()
        try:
            with contextlib.redirect_stdout(printed):
                exec(code, namespace)
        except Exception:
            pytest.fail(f"{block.where}: block raised\n{traceback.format_exc()}"
                        f"\nprinted:\n{printed.getvalue()}", pytrace=False)
        elapsed = time.monotonic() - started
        assert elapsed < BLOCK_TIME_LIMIT, f"{block.where}: block took {elapsed:.1f}s"
        _check_shown_output(block, printed.getvalue().splitlines())


def _check_shown_output(block: Block, printed: list[str]) -> None:
    remaining = iter(line.rstrip() for line in printed)
    for expected in block.shown_output():
        if not any(line == expected for line in remaining):
            pytest.fail(
                f"{block.where}: the block shows '# -> {expected}' but that line was not "
                f"printed (in this order). It printed:\n" + "\n".join(printed),
                pytrace=False,
            )


@pytest.mark.parametrize("path", DOC_FILES, ids=_doc_id)
def test_relative_links_resolve(path: Path) -> None:
    broken = []
    for number, target in relative_links(path):
        file_part, _, anchor = target.partition("#")
        linked = (path.parent / file_part) if file_part else path
        if not linked.exists():
            broken.append(f"{_doc_id(path)}:{number}: {target} (no such file)")
        elif anchor and linked.suffix == ".md" and anchor not in anchors(linked):
            broken.append(f"{_doc_id(path)}:{number}: {target} (no such heading)")
    assert not broken, "broken relative links:\n" + "\n".join(broken)


def _tree_in(text: str) -> str:
    """The exception tree drawn in ``text``: the lines from ``GatewayError`` to the next blank."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == "GatewayError")
    indent = len(lines[start]) - len(lines[start].lstrip())
    tree = []
    for line in lines[start:]:
        if not line.strip() or line.strip().startswith("```"):
            break
        tree.append(line[indent:].rstrip())
    return "\n".join(tree)


def test_error_handling_draws_the_tree_of_the_exceptions_module() -> None:
    import sark_sync
    from sark_sync import _exceptions

    source_tree = _tree_in(_exceptions.__doc__ or "")
    docs = (ROOT / "docs" / "gateway" / "ERROR_HANDLING.md").read_text(encoding="utf-8")
    assert _tree_in(docs) == source_tree, "copy the tree of sark_sync/_exceptions.py's docstring"
    ending = "Error|Exceeded|Failed|Timeout|Denied|Unavailable|Cancelled|Supported"
    drawn = set(re.findall(rf"[A-Z][A-Za-z]+(?:{ending})\b", source_tree))
    exported = {name for name in sark_sync.__all__
                if isinstance(getattr(sark_sync, name), type)
                and issubclass(getattr(sark_sync, name), sark_sync.GatewayError)}
    assert exported <= drawn, f"exceptions missing from the tree: {sorted(exported - drawn)}"
