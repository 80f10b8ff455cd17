"""Guards the guide's rule "a docstring on every public function saying what and why":
every public function, class and method of the project's packages and ``scripts/`` has
one (names starting with ``_`` are private; ``@overload`` stubs share their
implementation's; functions nested in functions are not public)."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("core", "schemas", "recommender", "stream", "api", "streamrec", "scripts")


def _is_overload(node: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    return any(getattr(d, "id", getattr(d, "attr", None)) == "overload"
               for d in node.decorator_list)


def _undocumented(body: list[ast.stmt], where: str) -> Iterator[str]:
    """The public definitions among ``body`` (and, for public classes, their public
    methods) without a docstring."""
    for node in body:
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            continue
        if node.name.startswith("_"):
            continue
        if isinstance(node, ast.ClassDef):
            yield from _undocumented(node.body, f"{where}{node.name}.")
        elif _is_overload(node):
            continue
        if ast.get_docstring(node) is None:
            yield f"{where}{node.name} (line {node.lineno})"


def undocumented(root: Path) -> list[str]:
    """``path: name (line n)`` of every public definition without a docstring."""
    found = []
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            rel = path.relative_to(root)
            found += [f"{rel}: {name}" for name in _undocumented(tree.body, "")]
    return found


def test_every_public_function_class_and_method_has_a_docstring() -> None:
    assert undocumented(ROOT) == []


def test_the_check_sees_functions_and_methods_but_not_private_or_overloads(
        tmp_path: Path) -> None:
    (tmp_path / "core").mkdir()
    (tmp_path / "core" / "m.py").write_text(
        "from typing import overload\n"
        "def bare(): pass\n"
        "def _private(): pass\n"
        "@overload\n"
        "def f(x: int) -> int: ...\n"
        "def f(x):\n    '''Doc.'''\n    def inner(): pass\n"
        "class C:\n    '''Doc.'''\n    def method(self): pass\n    def _hidden(self): pass\n"
        "class _P:\n    def method(self): pass\n")
    assert undocumented(tmp_path) == [
        "core/m.py: bare (line 2)", "core/m.py: C.method (line 11)"]
