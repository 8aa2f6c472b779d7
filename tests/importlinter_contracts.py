"""A contract type for import-linter: private modules stay inside their top-level subpackage.

import-linter has no built-in contract for this rule (docs/ARCHITECTURE.md, "What may import
what"); the rule itself is :func:`architecture_rules.private_import_problem`, tested without
import-linter in ``tests/unit/test_architecture.py``. This module only adapts it to
import-linter's Contract API (checked against import-linter 2.17), for ``tox -e lint``, which
puts ``tests/`` on ``PYTHONPATH`` so that ``.importlinter`` can name the class::

    [importlinter]
    contract_types =
        private_modules: importlinter_contracts.PrivateModulesContract

    [importlinter:contract:private]
    name = ...
    type = private_modules
    container = sark_sync

Every direct import of the graph whose imported module is private to another subpackage is a
violation, listed with its line numbers.
"""

from __future__ import annotations

from typing import Any

from architecture_rules import private_import_problem
from grimp import ImportGraph
from importlinter import Contract, ContractCheck, fields, output


class PrivateModulesContract(Contract):
    """Options: ``container``, the root package whose subpackages own their private modules."""

    type_name = "private_modules"

    container = fields.StringField()

    def check(self, graph: ImportGraph, verbose: bool) -> ContractCheck:
        container: str = self.container  # type: ignore[assignment]
        violations: list[dict[str, Any]] = []
        for imported in sorted(graph.modules):
            if not (imported == container or imported.startswith(container + ".")):
                continue
            for importer in sorted(graph.find_modules_that_directly_import(imported)):
                problem = private_import_problem(importer, imported, container)
                if problem is None:
                    continue
                details = graph.get_import_details(importer=importer, imported=imported)
                violations.append(
                    {
                        "problem": problem,
                        "lines": sorted({detail["line_number"] for detail in details}),
                    }
                )
        output.verbose_print(verbose, f"{len(violations)} private import(s) across packages")
        return ContractCheck(kept=not violations, metadata={"violations": violations})

    def render_broken_contract(self, check: ContractCheck) -> None:
        for violation in check.metadata["violations"]:
            lines = ", ".join(f"l.{line}" for line in violation["lines"])
            output.print_error(f"- {violation['problem']} ({lines})", bold=False)
        output.new_line()
        output.print(
            "Import it through its subpackage's __init__ (re-export the name there) or a "
            "public module of that subpackage."
        )
