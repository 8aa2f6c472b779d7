"""The rule of private modules (docs/ARCHITECTURE.md, "What may import what"), as a pure function.

import-linter has no contract type for it, so ``tests/importlinter_contracts.py`` wraps this
function in one for ``tox -e lint``; ``tests/unit/test_architecture.py`` tests the function on
a fake graph. It lives apart from the contract so that the unit test needs no import-linter.

The rule: a module whose dotted name, below a top-level subpackage of ``sark_sync``, has a
segment starting with ``_`` (``sark_sync.transports._guarded``,
``sark_sync.testing.gateway._api``) is private to that top-level subpackage: only modules
inside it may import it. Everything else goes through the subpackage's ``__init__`` (its
face) or its public modules (``sark_sync.transports.http``). The top-level value modules
(``sark_sync._config``, ...) are no subpackage's: anyone may import them. Dunder names
(``__init__``, ``__main__``, ``__version__``) are not private.
"""

from __future__ import annotations

PACKAGE = "sark_sync"


def _is_private(segment: str) -> bool:
    return segment.startswith("_") and not (segment.startswith("__") and segment.endswith("__"))


def owner_of_private(module: str, package: str = PACKAGE) -> str | None:
    """The top-level subpackage that ``module`` is private to, or None if it is not private."""
    parts = module.split(".")
    if parts[0] != package or len(parts) < 3:
        return None
    if any(_is_private(segment) for segment in parts[2:]):
        return ".".join(parts[:2])
    return None


def private_import_problem(importer: str, imported: str, package: str = PACKAGE) -> str | None:
    """Why ``importer`` may not import ``imported``, or None if it may."""
    owner = owner_of_private(imported, package)
    if owner is None:
        return None
    if importer == owner or importer.startswith(owner + "."):
        return None
    return f"{importer} imports {imported}, which is private to {owner}"
