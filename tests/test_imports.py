"""The composition root (bot/services.py) is on no import cycle: it imports the channels'
outbound parts, and whatever uses the services imports it, never the other way round.

Every import counts, also one under ``TYPE_CHECKING`` or inside a function (both only hide a
cycle), and importing a submodule counts as importing its packages (their ``__init__`` runs).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("bot", "dialogs", "workflow", "notices", "storage")


def module_names() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            if "migrations" not in parts:
                found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def import_graph() -> dict[str, set[str]]:
    modules = module_names()

    def ours(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text("utf-8"))):
            if isinstance(node, ast.Import):
                targets |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets |= {node.module, *(f"{node.module}.{a.name}" for a in node.names)}
        edges = set()
        for target in filter(None, map(ours, targets)):
            parent = target
            while parent:  # a submodule's packages are imported with it
                if parent in modules and not f"{name}.".startswith(f"{parent}."):
                    edges.add(parent)
                parent = parent.rpartition(".")[0]
        graph[name] = edges
    return graph


def reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for target in graph[todo.pop()] - seen:
            seen.add(target)
            todo.append(target)
    return seen


def test_the_composition_root_is_on_no_import_cycle() -> None:
    graph = import_graph()
    back = sorted(m for m in reachable(graph, "bot.services") if "bot.services" in graph[m])
    assert back == [], f"bot.services imports these, and they import it: {back}"
