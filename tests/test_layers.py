"""The import rules of ARCHITECTURE.md that a slip would break silently: SQL dialects are
storage's business (storage/sql.py), and storage imports nothing of ours."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("bot", "dialogs", "workflow", "notices", "storage")


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def _modules(package: str) -> list[Path]:
    return [p for p in (ROOT / package).rglob("*.py") if "migrations" not in p.parts]


def test_only_storage_speaks_a_sql_dialect() -> None:
    offenders = [
        str(path.relative_to(ROOT))
        for package in PACKAGES
        if package != "storage"
        for path in _modules(package)
        if any(name.startswith("sqlalchemy.dialects") for name in _imports(path))
    ]
    assert offenders == []


def test_storage_imports_nothing_of_ours() -> None:
    ours = set(PACKAGES) - {"storage"}
    offenders = [
        f"{path.relative_to(ROOT)}: {name}"
        for path in _modules("storage")
        for name in sorted(_imports(path))
        if name.split(".")[0] in ours
    ]
    assert offenders == []
