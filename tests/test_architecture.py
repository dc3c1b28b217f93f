"""The package's import graph has no cycles (issue 20): read statically from the AST of every
module under src/hw5kit, so that a cycle fails here before it fails someone at run time.

What counts as an import of module B by module A:

* an import statement in A that names B, absolute or relative (``import hw5kit.b``,
  ``from . import b``, ``from .b import name``, ``from .. import b``); importing ``x.y.b`` also
  imports the packages ``x`` and ``x.y``, so those are imported too, except A's own packages (a
  module always needs its package first: that is no cycle);
* at **import time**: the statements that run when A is imported (module level, including inside
  ``if``, ``try`` and ``with`` blocks), but not those under ``if TYPE_CHECKING:``, which never
  run (type annotations only);
* **deferred**: also the imports inside functions and methods. They run when the function is
  called, not when A is imported, so they cannot make an import fail; but a cycle closed by one
  still ties two modules to each other (all four cycles issue 20 names were closed this way,
  and an import-time rule alone would not have seen any of them).

Imports by name through ``importlib`` are not seen (the fake gcloud loads its command handlers
that way).

Rule: no cycle at all, neither at import time nor through deferred imports. What both sides
of a cycle need goes into a module of its own.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from .conftest import ROOT

SRC = ROOT / "src"


def modules(src: Path) -> dict[str, tuple[Path, bool]]:
    """``{dotted name: (file, is a package)}`` of every module under ``src``."""
    found = {}
    for path in sorted(src.rglob("*.py")):
        parts = list(path.relative_to(src).with_suffix("").parts)
        package = parts[-1] == "__init__"
        found[".".join(parts[:-1] if package else parts)] = (path, package)
    return found


def _type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(node: ast.AST, deferred: bool):
    """``(statement, in a function)`` for each import statement under ``node``; ``deferred``:
    include those in functions. Imports under ``if TYPE_CHECKING:`` are never included."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            if deferred:
                yield from _imports(child, deferred)
        elif isinstance(child, ast.If) and _type_checking(child.test):
            for stmt in child.orelse:
                yield from _imports(ast.Module(body=[stmt], type_ignores=[]), deferred)
        elif isinstance(child, ast.Import | ast.ImportFrom):
            yield child
        else:
            yield from _imports(child, deferred)


def graph(src: Path, *, deferred: bool) -> dict[str, set[str]]:
    known = modules(src)
    edges: dict[str, set[str]] = {name: set() for name in known}
    for name, (path, package) in known.items():
        here = name.split(".") if package else name.split(".")[:-1]
        for stmt in _imports(ast.parse(path.read_text(), str(path)), deferred):
            if isinstance(stmt, ast.Import):
                targets = [alias.name for alias in stmt.names]
            else:
                base = here[: len(here) - stmt.level + 1] if stmt.level else []
                base = ".".join(base + ([stmt.module] if stmt.module else []))
                targets = [base] + [f"{base}.{alias.name}" for alias in stmt.names]
            for target in targets:
                if target not in known:
                    continue
                parts = target.split(".")
                for end in range(1, len(parts) + 1):  # the target and the packages above it
                    imported = ".".join(parts[:end])
                    if imported in known and not (name + ".").startswith(imported + "."):
                        edges[name].add(imported)
    return edges


def cycles(edges: dict[str, set[str]]) -> list[frozenset[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(frozenset(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def test_no_module_of_hw5kit_imports_itself_back_at_import_time():
    found = cycles(graph(SRC, deferred=False))
    assert not found, "import cycles: " + "; ".join(" - ".join(sorted(c)) for c in found)


def test_no_cycle_through_imports_in_functions_either():
    found = cycles(graph(SRC, deferred=True))
    assert not found, (
        "import cycles (through function-level imports too): "
        + "; ".join(" - ".join(sorted(c)) for c in found)
        + " (move what both sides need into a module of its own)"
    )


def _package(tmp_path: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = tmp_path / "pkg" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp_path


@pytest.mark.parametrize(
    ("files", "at_import", "deferred"),
    [
        ({"a.py": "from . import b\n", "b.py": "from .a import x\n"}, True, True),
        ({"a.py": "import pkg.b\n", "b.py": "def f():\n    from pkg import a\n"}, False, True),
        (
            {"a.py": "from .b import x\n", "b.py": "from typing import TYPE_CHECKING\n"
             "if TYPE_CHECKING:\n    from .a import y\n"},
            False,
            False,
        ),
        ({"sub/__init__.py": "from .c import x\n", "sub/c.py": "from . import d\n",
          "sub/d.py": "x = 1\n"}, False, False),  # a package importing its own modules
        ({"a.py": "from .sub import c\n", "sub/__init__.py": "", "sub/c.py": "x = 1\n",
          "sub/d.py": "from ..a import y\n", "b.py": ""}, False, False),
        ({"a.py": "from .sub.c import x\n", "sub/__init__.py": "from ..a import y\n",
          "sub/c.py": "x = 1\n"}, True, True),  # importing sub.c runs sub/__init__ first
        ({"a.py": "try:\n    from . import b\nexcept ImportError:\n    pass\n",
          "b.py": "if True:\n    from . import a\n"}, True, True),
    ],
)  # fmt: skip
def test_the_analysis_sees_the_cycles_that_run_and_only_those(tmp_path, files, at_import, deferred):
    src = _package(tmp_path, {"__init__.py": "", **files})
    assert bool(cycles(graph(src, deferred=False))) is at_import
    assert bool(cycles(graph(src, deferred=True))) is deferred
