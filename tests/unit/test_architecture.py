"""The package's shape, as docs/ARCHITECTURE.md draws it, read from the source with ``ast``.

No module is imported: every ``import`` statement of every module of ``sark_sync`` is read,
function bodies included and ``if TYPE_CHECKING:`` blocks left out (they never run), and
resolved to the module it loads:

- ``import a.b.c`` loads ``a.b.c``;
- ``from pkg import name`` loads ``pkg.name`` when that is a module, and ``pkg`` (its
  ``__init__``, the package's face) otherwise; relative imports are resolved first.

A package's ``__init__`` is the node of the package. Loading ``pkg.x`` also runs
``pkg/__init__`` first, but that is not an edge here: it is what every submodule does, and
``pkg/__init__`` importing ``pkg.x`` would otherwise always look like a cycle. What is a cycle
is ``pkg/__init__`` -> ``pkg.x`` -> ``pkg``: a submodule that imports a name from its own
package's face while that face is still importing it.

The import-linter contracts of ``tox -e lint`` (``.importlinter``) check the layers and the
private modules; this file checks what they do not: cycles, sizes, the top level, imports in
function bodies and references to the old design document.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from architecture_rules import owner_of_private, private_import_problem

ROOT = Path(__file__).resolve().parents[2]
PACKAGE_DIR = ROOT / "sark_sync"
PACKAGE = "sark_sync"

#: Longest module, in lines (STYLE.md: split by concept before a file gets there).
MAX_MODULE_LINES = 400
#: Most ``.py`` files directly in ``sark_sync/``: the value modules, the root, ``__version__``.
MAX_TOP_LEVEL_MODULES = 12
#: Files other than modules allowed directly in ``sark_sync/``.
TOP_LEVEL_DATA = frozenset({"py.typed"})
#: Marks the one allowed kind of import in a function body (docs/ARCHITECTURE.md, "Imports in
#: a function"): a heavy optional part loaded on demand. It must be in a comment on the
#: import's line or on the line just above it.
ON_DEMAND = re.compile(r"#.*\bloaded on demand\b", re.IGNORECASE)
#: References to the old design document (split so that this file does not match itself).
DESIGN_REFERENCE = re.compile("DESIGN" + r"(?: §|\.md)")


@dataclass(frozen=True)
class Import:
    importer: str
    imported: str
    path: Path
    line: int
    in_function: bool

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def module_name(path: Path, package_dir: Path = PACKAGE_DIR) -> str:
    parts = list(path.relative_to(package_dir.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def package_modules(package_dir: Path = PACKAGE_DIR) -> dict[str, Path]:
    return {
        module_name(path, package_dir): path
        for path in sorted(package_dir.rglob("*.py"))
        if "__pycache__" not in path.parts
    }


def _is_type_checking(test: ast.expr) -> bool:
    if isinstance(test, ast.Name):
        return test.id == "TYPE_CHECKING"
    return isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"


def _import_nodes(
    node: ast.AST, in_function: bool = False
) -> Iterator[tuple[ast.Import | ast.ImportFrom, bool]]:
    """Every import statement under ``node`` that runs, with whether it is in a function."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, (ast.Import, ast.ImportFrom)):
            yield child, in_function
        elif isinstance(child, ast.If) and _is_type_checking(child.test):
            for other in child.orelse:
                yield from _import_nodes(ast.Module(body=[other], type_ignores=[]), in_function)
        else:
            inside = in_function or isinstance(
                child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)
            )
            yield from _import_nodes(child, inside)


def _resolve(name: str, modules: dict[str, Path]) -> str:
    """The nearest module of the package that ``name`` (a module or an attribute) lives in."""
    while name not in modules and "." in name:
        name = name.rsplit(".", 1)[0]
    return name


def imports_of(module: str, path: Path, modules: dict[str, Path]) -> Iterator[Import]:
    """The package modules that ``module`` loads, one :class:`Import` per name imported."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    is_package = path.name == "__init__.py"
    for node, in_function in _import_nodes(tree):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        else:
            if node.level:
                base = module.split(".")
                if not is_package:
                    base.pop()
                base = base[: len(base) - (node.level - 1)]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            for alias in node.names:
                candidate = f"{source}.{alias.name}"
                targets.append(candidate if candidate in modules else source)
        for target in targets:
            if target == PACKAGE or target.startswith(PACKAGE + "."):
                yield Import(module, _resolve(target, modules), path, node.lineno, in_function)


def import_graph(modules: dict[str, Path]) -> list[Import]:
    return [imp for name, path in modules.items() for imp in imports_of(name, path, modules)]


def find_cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """One cycle (``[a, b, ..., a]``) per strongly connected component that has one."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[set[str]] = []

    def connect(node: str) -> None:  # Tarjan; the package is far too small for recursion limits
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(edges.get(node, ())):
            if target not in index:
                connect(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.add(member)
                if member == node:
                    break
            if len(component) > 1 or node in edges.get(node, ()):
                components.append(component)

    for node in sorted(edges):
        if node not in index:
            connect(node)

    cycles = []
    for component in components:
        start = min(component)
        # Breadth-first from start back to start, inside the component: a shortest cycle.
        previous: dict[str, str] = {}
        frontier = [start]
        found = False
        while frontier and not found:
            following = []
            for node in frontier:
                for target in sorted(edges.get(node, ())):
                    if target == start:
                        previous[start] = node
                        found = True
                        break
                    if target in component and target not in previous:
                        previous[target] = node
                        following.append(target)
                if found:
                    break
            frontier = following
        path = [start]
        node = previous[start]
        while node != start:
            path.append(node)
            node = previous[node]
        path.append(start)
        cycles.append(path[::-1])
    return sorted(cycles)


# --- the rules of the package -----------------------------------------------------------------


def test_no_import_cycle() -> None:
    imports = import_graph(package_modules())
    edges: dict[str, set[str]] = {}
    lines: dict[tuple[str, str], str] = {}
    for imp in imports:
        edges.setdefault(imp.importer, set()).add(imp.imported)
        lines.setdefault((imp.importer, imp.imported), imp.where)
    cycles = find_cycles(edges)
    report = [
        " -> ".join(cycle)
        + "\n"
        + "\n".join(f"    {lines[a, b]}: {a} -> {b}" for a, b in zip(cycle, cycle[1:]))
        for cycle in cycles
    ]
    assert not cycles, "import cycles:\n" + "\n".join(report)


def test_no_module_over_the_line_limit() -> None:
    too_long = {
        str(path.relative_to(ROOT)): count
        for path in package_modules().values()
        if (count := len(path.read_text(encoding="utf-8").splitlines())) > MAX_MODULE_LINES
    }
    assert too_long == {}, f"modules over {MAX_MODULE_LINES} lines (split them by concept):\n" + (
        "\n".join(f"    {path}: {count}" for path, count in sorted(too_long.items()))
    )


def test_top_level_holds_few_modules_and_otherwise_folders() -> None:
    entries = [entry for entry in PACKAGE_DIR.iterdir() if entry.name != "__pycache__"]
    modules = sorted(entry.name for entry in entries if entry.suffix == ".py")
    others = sorted(
        entry.name
        for entry in entries
        if entry.suffix != ".py" and not entry.is_dir() and entry.name not in TOP_LEVEL_DATA
    )
    assert len(modules) <= MAX_TOP_LEVEL_MODULES, modules
    assert others == []


def test_no_function_level_import_unless_loaded_on_demand() -> None:
    unmarked = []
    for path in package_modules().values():
        source = path.read_text(encoding="utf-8")
        lines = source.splitlines()
        for node, in_function in _import_nodes(ast.parse(source, str(path))):
            nearby = lines[max(node.lineno - 2, 0) : node.end_lineno]
            if in_function and not any(ON_DEMAND.search(line) for line in nearby):
                unmarked.append(f"{path.relative_to(ROOT)}:{node.lineno}: {ast.unparse(node)}")
    assert unmarked == [], "imports in a function body, no '# loaded on demand' comment:\n" + (
        "\n".join(f"    {line}" for line in unmarked)
    )


def test_nothing_points_at_the_old_design_document() -> None:
    roots = [PACKAGE_DIR, ROOT / "docs", ROOT / "tests"]
    files = [ROOT / "README.md"] + [
        path
        for root in roots
        for path in sorted(root.rglob("*"))
        if path.is_file() and path.suffix in {".py", ".md", ".rego", ".txt", ".cfg", ".toml"}
    ]
    found = [
        f"{path.relative_to(ROOT)}:{number}"
        for path in files
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if DESIGN_REFERENCE.search(line)
    ]
    assert found == [], "point at docs/ARCHITECTURE.md or another doc under docs/ instead:\n" + (
        "\n".join(f"    {where}" for where in found)
    )


# --- the checkers themselves, on made-up trees ----------------------------------------------


def _write(root: Path, files: dict[str, str]) -> dict[str, Path]:
    for relative, text in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return package_modules(root / PACKAGE)


def test_reading_resolves_relative_imports_faces_and_submodules(tmp_path: Path) -> None:
    modules = _write(
        tmp_path,
        {
            "sark_sync/__init__.py": "",
            "sark_sync/_config.py": "",
            "sark_sync/wire/__init__.py": "from ._sse import X\nfrom . import _jsonrpc\n",
            "sark_sync/wire/_sse.py": "",
            "sark_sync/wire/_jsonrpc.py": "",
            "sark_sync/client/__init__.py": "",
            "sark_sync/client/_c.py": (
                "from typing import TYPE_CHECKING\n"
                "from .. import _config\n"
                "from ..wire import X\n"
                "import sark_sync.wire._sse\n"
                "if TYPE_CHECKING:\n"
                "    from ..wire import _jsonrpc\n"
                "def f():\n"
                "    from ..wire._jsonrpc import Y  # loaded on demand\n"
            ),
        },
    )
    found = {
        (imp.importer, imp.imported, imp.line, imp.in_function)
        for imp in import_graph(modules)
    }
    assert found == {
        ("sark_sync.wire", "sark_sync.wire._sse", 1, False),
        ("sark_sync.wire", "sark_sync.wire._jsonrpc", 2, False),
        ("sark_sync.client._c", "sark_sync._config", 2, False),
        ("sark_sync.client._c", "sark_sync.wire", 3, False),
        ("sark_sync.client._c", "sark_sync.wire._sse", 4, False),
        ("sark_sync.client._c", "sark_sync.wire._jsonrpc", 8, True),
    }


def test_a_submodule_importing_its_own_face_is_a_cycle_and_the_face_alone_is_not(
    tmp_path: Path,
) -> None:
    files = {
        "sark_sync/__init__.py": "",
        "sark_sync/wire/__init__.py": "from ._sse import X\nfrom ._jsonrpc import Y\n",
        "sark_sync/wire/_sse.py": "from ._jsonrpc import Y\n",
        "sark_sync/wire/_jsonrpc.py": "",
    }
    edges: dict[str, set[str]] = {}
    for imp in import_graph(_write(tmp_path, files)):
        edges.setdefault(imp.importer, set()).add(imp.imported)
    assert find_cycles(edges) == []

    (tmp_path / "sark_sync/wire/_jsonrpc.py").write_text("from . import X\n", encoding="utf-8")
    edges = {}
    for imp in import_graph(package_modules(tmp_path / PACKAGE)):
        edges.setdefault(imp.importer, set()).add(imp.imported)
    assert find_cycles(edges) == [["sark_sync.wire", "sark_sync.wire._jsonrpc", "sark_sync.wire"]]


def test_find_cycles_reports_each_cycle_once_from_its_smallest_module() -> None:
    edges = {"c": {"a"}, "a": {"b"}, "b": {"c", "d"}, "d": set(), "e": {"e"}}
    assert find_cycles(edges) == [["a", "b", "c", "a"], ["e", "e"]]


def test_private_rule_on_a_fake_graph() -> None:
    allowed = [
        ("sark_sync.transports.http", "sark_sync.transports._guarded"),
        ("sark_sync.transports", "sark_sync.transports._base"),
        ("sark_sync.testing.stdio._hosting", "sark_sync.testing.gateway._api"),
        ("sark_sync.client._client", "sark_sync._config"),
        ("sark_sync.client._client", "sark_sync.transports.http"),
        ("sark_sync.client._client", "sark_sync.transports"),
        ("sark_sync.cli._main", "sark_sync.cli.__main__"),
        ("sark_sync.cli._main", "sark_sync.__version__"),
    ]
    assert [pair for pair in allowed if private_import_problem(*pair)] == []
    problem = private_import_problem("sark_sync.governance._http", "sark_sync.transports._guarded")
    assert problem == (
        "sark_sync.governance._http imports sark_sync.transports._guarded, which is private to "
        "sark_sync.transports"
    )
    assert private_import_problem("sark_sync", "sark_sync.resilience._breaker") is not None
    assert owner_of_private("sark_sync.testing.gateway._api") == "sark_sync.testing"
    assert owner_of_private("sark_sync.testing._mock") == "sark_sync.testing"
    assert owner_of_private("sark_sync.transports.http") is None
    assert owner_of_private("sark_sync._exceptions") is None
    assert owner_of_private("requests._internal_utils") is None
