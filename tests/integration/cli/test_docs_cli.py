"""Every ``sark-sync`` example in the docs runs, and prints what the docs show.

The convention (also stated in docs/CLI.md, "How the examples are checked"):

- Examples are ```console blocks in ``docs/*.md``, ``docs/gateway/*.md`` and ``README.md``.
  A line starting with ``$ `` is a command; the lines after it, up to the next ``$ `` line or
  the end of the block, are what it prints, standard output and standard error merged as a
  terminal shows them.
- Only ``$ sark-sync ...`` commands run, and ``$ echo $?``, which prints the exit status of the
  command before it. Other commands (``$ export ...``) are there for the reader and not run.
- Each block runs against a fresh gateway: the one of ``sark-sync serve --demo`` (the demo's
  catalogue and policy), with ``SARK_GATEWAY_URL`` and ``SARK_API_KEY`` set to it,
  ``SARK_USER_TOKEN`` set to alice's token (developer, team finance) and ``VIEWER_TOKEN`` to
  bob's (viewer), exactly what ``sark-sync serve --demo`` prints; ``$NAME`` in a command is
  expanded from that environment. The words are split as a shell would (``shlex``), a
  ``python`` word is the interpreter that runs the tests, and commands run in the root of the
  repository. Pipes and redirections are not supported.
- Shown output must match the output line by line, in order: a line ``...`` matches any
  number of lines (none included), and ``...`` inside a line matches any text (ids,
  latencies, ports). A block that shows nothing after a command checks nothing about it.
- ``sark-sync serve`` runs until it is stopped, so its examples are only parsed (a bad option
  fails); ``sark-sync events`` examples must say ``--count`` so that they end.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shlex
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from sark_sync.cli import _main as cli
from sark_sync.cli._demo_gateway import build_gateway, demo_variables, issue_users

ROOT = Path(__file__).resolve().parents[3]
DOC_FILES = sorted([*ROOT.glob("docs/*.md"), *ROOT.glob("docs/gateway/*.md"),
                    *[p for p in [ROOT / "README.md"] if p.exists()]])
_OPEN = re.compile(r"^[ \t]*```console[ \t]*$")
_CLOSE = re.compile(r"^[ \t]*```[ \t]*$")
WILDCARD = "..."


@dataclass
class Step:
    line: int  # 1-based line of the command in the Markdown file
    command: str
    shown: list[str] = field(default_factory=list)


@dataclass
class Example:
    path: Path
    line: int
    steps: list[Step]

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def console_blocks(path: Path) -> list[Example]:
    """The ```console blocks of a Markdown file that run at least one sark-sync command."""
    lines = path.read_text(encoding="utf-8").splitlines()
    examples, index = [], 0
    while index < len(lines):
        if not _OPEN.match(lines[index]):
            index += 1
            continue
        start, steps = index + 1, []
        index += 1
        while index < len(lines) and not _CLOSE.match(lines[index]):
            text = lines[index].strip() if lines[index].strip() == WILDCARD else lines[index]
            if text.startswith("$ "):
                steps.append(Step(index + 1, text[2:].strip()))
            elif steps:
                steps[-1].shown.append(text.rstrip())
            index += 1
        if any(step.command.startswith("sark-sync") for step in steps):
            examples.append(Example(path, start, steps))
        index += 1
    return examples


def _matches(expected: list[str], actual: list[str]) -> bool:
    """Whether ``actual`` lines match ``expected`` lines (``...`` wildcards, see above)."""
    if not expected:
        return not actual
    head, rest = expected[0], expected[1:]
    if head == WILDCARD:
        return any(_matches(rest, actual[i:]) for i in range(len(actual) + 1))
    if not actual:
        return False
    pattern = ".*".join(re.escape(part) for part in head.split(WILDCARD))
    return re.fullmatch(pattern, actual[0].rstrip()) is not None and _matches(rest, actual[1:])


def run_command(argv: list[str]) -> tuple[int, str]:
    """``sark-sync argv`` in-process: its exit status and its merged output."""
    output = io.StringIO()
    with contextlib.redirect_stdout(output), contextlib.redirect_stderr(output):
        try:
            status = cli.main(argv)
        except SystemExit as exc:  # argparse's usage errors
            status = exc.code if isinstance(exc.code, int) else 1
    return status, output.getvalue()


@contextlib.contextmanager
def docs_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A fresh demo gateway and the variables ``sark-sync serve --demo`` prints."""
    for name in [n for n in os.environ if n.startswith("SARK_")]:
        monkeypatch.delenv(name)
    with build_gateway() as gateway:
        for name, value in demo_variables(gateway, issue_users(gateway)).items():
            monkeypatch.setenv(name, value)
        yield


def _argv(step: Step, example: Example) -> list[str]:
    words = [os.path.expandvars(word) for word in shlex.split(step.command)]
    if any(word in ("|", ">", "<", "&&", ";") for word in words):
        pytest.fail(f"{example.where}: pipes and redirections are not supported: "
                    f"{step.command}", pytrace=False)
    return [sys.executable if word == "python" else word for word in words[1:]]


def run_example(example: Example, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Run one block; return the failures (empty: the block shows what happens)."""
    failures, status = [], 0
    monkeypatch.chdir(ROOT)
    with docs_environment(monkeypatch):
        for step in example.steps:
            where = f"{example.path.relative_to(ROOT)}:{step.line}"
            if step.command == "echo $?":
                output = f"{status}\n"
            elif step.command.startswith("sark-sync "):
                argv = _argv(step, example)
                if argv[:1] == ["serve"]:
                    _parse_only(argv, where)
                    continue
                if "events" in argv and "--count" not in argv:
                    pytest.fail(f"{where}: an events example needs --count", pytrace=False)
                status, output = run_command(argv)
            else:
                continue  # shown for the reader only
            shown = _without_trailing_blank_lines(step.shown)
            if shown and not _matches(shown, output.splitlines()):
                failures.append(f"{where}: `$ {step.command}` shows\n" + "\n".join(shown)
                                + "\nbut printed\n" + output)
    return failures


def _without_trailing_blank_lines(lines: list[str]) -> list[str]:
    while lines and not lines[-1].strip():
        lines = lines[:-1]
    return lines


def _parse_only(argv: list[str], where: str) -> None:
    try:
        cli._parse(cli._parser(), argv)
    except SystemExit:
        pytest.fail(f"{where}: `sark-sync {' '.join(argv)}` does not parse", pytrace=False)


EXAMPLES = [example for path in DOC_FILES for example in console_blocks(path)]


def test_the_cli_page_has_examples() -> None:
    assert any(example.path.name == "CLI.md" for example in EXAMPLES)


@pytest.mark.parametrize("example", EXAMPLES, ids=[e.where for e in EXAMPLES])
def test_cli_example_prints_what_the_docs_show(
    example: Example, monkeypatch: pytest.MonkeyPatch
) -> None:
    failures = run_example(example, monkeypatch)
    assert not failures, "\n\n".join(failures)


@pytest.mark.parametrize(("expected", "actual", "ok"), [
    (["a", "b"], ["a", "b"], True),
    (["a"], ["a", "b"], False),
    (["a", "...", "c"], ["a", "b", "b", "c"], True),
    (["a", "...", "c"], ["a", "c"], True),
    (["...", "c"], ["a", "b"], False),
    (["id ... ms"], ["id 12345 0.3 ms"], True),
    (["id ... ms"], ["id 1 s"], False),
    (["x (a.b)"], ["x (aXb)"], False),
])
def test_wildcards_match_lines_and_text(expected: list[str], actual: list[str], ok: bool
                                        ) -> None:
    assert _matches(expected, actual) is ok
