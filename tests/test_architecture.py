"""The package's structure: no module imports, even lazily, a module that imports it back.

Each module's imports are read with ``ast`` (imports under ``if TYPE_CHECKING:`` are
annotations only and do not count); importing ``a.b.c`` also runs the packages ``a.b``
above it, so those count as imported too (except the importing module's own packages,
which have always started running before it).
"""

from __future__ import annotations

import ast
from pathlib import Path

import websession

ROOT = Path(websession.__file__).parent
PACKAGE = "websession"


def _module_name(path: Path) -> str:
    parts = [PACKAGE, *path.relative_to(ROOT).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(path): path for path in ROOT.rglob("*.py")}


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    found: list[ast.Import | ast.ImportFrom] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for statement in node.orelse:
                visit(statement)
            return
        if isinstance(node, ast.Import | ast.ImportFrom):
            found.append(node)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def _with_packages(name: str) -> set[str]:
    """``name`` and the packages above it, below the top-level package (which every
    module's import runs first, and which imports the public modules by design)."""
    parts = name.split(".")
    return {".".join(parts[:i]) for i in range(2, len(parts) + 1)} & set(MODULES)


def imported_by(name: str) -> set[str]:
    """The websession modules that importing ``name`` runs."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets: set[str] = set()
    for node in _imports(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            bases = [alias.name for alias in node.names]
        else:
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1])
                base = f"{base}.{node.module}" if node.module else base
            else:
                base = node.module or ""
            bases = [base] + [f"{base}.{alias.name}" for alias in node.names]
        for base in bases:
            if base.split(".")[0] == PACKAGE:
                targets |= _with_packages(base)
    # A module's own packages run before it does: importing them adds nothing.
    return targets - _with_packages(name)


def find_cycle() -> list[str] | None:
    graph = {name: imported_by(name) for name in MODULES}
    done: set[str] = set()

    def walk(node: str, path: list[str]) -> list[str] | None:
        if node in path:
            return [*path[path.index(node):], node]
        if node in done:
            return None
        for target in sorted(graph[node]):
            cycle = walk(target, [*path, node])
            if cycle:
                return cycle
        done.add(node)
        return None

    for name in sorted(graph):
        cycle = walk(name, [])
        if cycle:
            return cycle
    return None


def test_the_walk_sees_the_package() -> None:
    assert "websession._core" in MODULES
    assert "websession.providers.base" in imported_by("websession._core")
    assert "websession.providers" in imported_by("websession._core")


def test_no_import_cycle() -> None:
    assert find_cycle() is None, " -> ".join(find_cycle() or [])
