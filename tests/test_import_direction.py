"""Imports flow one way: cli/sdk -> server -> jobs/serve -> reconcile -> providers -> runtime.

Every import is counted, also those inside functions and under ``TYPE_CHECKING``: a
deferred import is still a dependency.
"""

from __future__ import annotations

import ast
from pathlib import Path

import skystate

ROOT = Path(skystate.__file__).parent
FRONT_ENDS = ("skystate.sdk", "skystate.cli", "skystate.status_view", "skystate.tables",
              "skystate.request_progress")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for path in ROOT.rglob("*.py"):
        name = _module_name(path)
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.add(node.module)
                found.update(f"{node.module}.{alias.name}" for alias in node.names)
        graph[name] = {m for m in found if m.startswith("skystate")}
    return graph


def _is(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".") or (
        prefix == "skystate.cli" and module.startswith("skystate.cli_"))


def _offenders(graph: dict[str, set[str]], lower: str, upper: tuple[str, ...]) -> list[str]:
    return sorted(f"{mod} imports {dep}" for mod, deps in graph.items() if _is(mod, lower)
                  for dep in deps if any(_is(dep, up) for up in upper))


def test_server_does_not_import_the_front_ends() -> None:
    assert _offenders(_imports(), "skystate.server", FRONT_ENDS) == []


def test_reconcile_does_not_import_the_server_or_the_front_ends() -> None:
    upper = (*FRONT_ENDS, "skystate.server", "skystate.jobs", "skystate.serve")
    assert _offenders(_imports(), "skystate.reconcile", upper) == []


def test_no_two_reconcile_modules_import_each_other() -> None:
    graph = _imports()
    reconcile = {m: {d for d in deps if d in graph and d.startswith("skystate.reconcile.")}
                 for m, deps in graph.items() if m.startswith("skystate.reconcile.")}
    pairs = sorted(f"{a} <-> {b}" for a, deps in reconcile.items() for b in deps
                   if a < b and a in reconcile.get(b, set()))
    assert pairs == []
