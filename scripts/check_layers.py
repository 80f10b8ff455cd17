"""The import-layer check: imports only go down, including imports inside functions.

Layers, bottom to top (ARCHITECTURE.md): ``core`` and ``schemas`` (``schemas`` may use
``core``; ``core`` uses nothing of ours); ``recommender`` (numpy, scipy, implicit only:
no package of ours); ``stream`` and ``api`` (never each other); ``streamrec`` on top.
``tests`` may import anything; ``scripts`` anything but ``tests`` (a tool must not depend
on test code). Every ``import`` statement is checked, wherever it stands (inside a
function, under ``if TYPE_CHECKING:``), because a lazy import is still a dependency; so is
every ``importlib.import_module(...)`` or ``__import__(...)`` whose module name is a string
literal or an f-string with a literal head (``f"api.{name}"``).

Run: ``python scripts/check_layers.py`` (exit 1 and one line per violation), or
``--graph`` to print the package import graph with counts (module-level / in-function).
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

#: What each package may import from the project (besides itself).
ALLOWED: dict[str, frozenset[str]] = {
    "core": frozenset(),
    "schemas": frozenset({"core"}),
    "recommender": frozenset(),
    "stream": frozenset({"core", "schemas", "recommender"}),
    "api": frozenset({"core", "schemas", "recommender"}),
    "streamrec": frozenset({"core", "schemas", "recommender", "stream", "api"}),
    "scripts": frozenset({"core", "schemas", "recommender", "stream", "api", "streamrec"}),
}
PACKAGES = frozenset(ALLOWED) | {"tests"}
#: The calls that import a module named by their first argument.
_DYNAMIC = frozenset({"import_module", "__import__"})


def _dynamic_name(node: ast.Call) -> str | None:
    """The module a literal ``import_module("x.y")`` / ``__import__("x")`` names (for an
    f-string, its literal head), else ``None``."""
    func = node.func
    called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
    if called not in _DYNAMIC or not node.args:
        return None
    arg = node.args[0]
    if isinstance(arg, ast.JoinedStr) and arg.values:
        arg = arg.values[0]
    if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
        return arg.value
    return None


def imports(path: Path) -> Iterator[tuple[int, str, bool]]:
    """``(line, imported top-level package, inside a function)`` of every project import."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    nested: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            nested.update(id(n) for n in ast.walk(node) if n is not node)
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        elif isinstance(node, ast.Call) and (dynamic := _dynamic_name(node)):
            names = [dynamic]
        for name in names:
            top = name.split(".")[0]
            if top in PACKAGES:
                yield node.lineno, top, id(node) in nested


def python_files(root: Path) -> Iterator[tuple[str, Path]]:
    """``(package, file)`` for every Python file of the project's packages."""
    for package in sorted(PACKAGES):
        for path in sorted((root / package).rglob("*.py")):
            yield package, path


def violations(root: Path) -> list[str]:
    """One readable line per import that goes up or sideways in the layer order."""
    found = []
    for package, path in python_files(root):
        allowed = ALLOWED.get(package)
        if allowed is None:
            continue
        for line, target, in_function in imports(path):
            if target != package and target not in allowed:
                where = " (inside a function)" if in_function else ""
                found.append(f"{path.relative_to(root)}:{line}: {package} imports "
                             f"{target}{where}; {package} may import only "
                             f"{', '.join(sorted(allowed)) or 'no package of ours'}")
    return found


def graph(root: Path) -> str:
    """The package import graph: ``a -> b: N module-level + M in functions``."""
    top: Counter[tuple[str, str]] = Counter()
    lazy: Counter[tuple[str, str]] = Counter()
    for package, path in python_files(root):
        for _, target, in_function in imports(path):
            if target != package:
                (lazy if in_function else top)[(package, target)] += 1
    edges = sorted(set(top) | set(lazy))
    return "\n".join(f"{a} -> {b}: {top[(a, b)]} module-level + {lazy[(a, b)]} in functions"
                     for a, b in edges)


def main(argv: list[str] | None = None) -> int:
    """Print violations (exit 1 when any) or, with ``--graph``, the import graph."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--graph", action="store_true", help="print the package graph")
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parent.parent)
    args = parser.parse_args(argv)
    if args.graph:
        print(graph(args.root))
        return 0
    found = violations(args.root)
    for line in found:
        print(line)
    print(f"import layers: {len(found)} violation(s)", file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    raise SystemExit(main())
