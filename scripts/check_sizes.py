"""The size check: modules of at most ~400 lines, functions of at most ~80.

Every source file of the project's packages (and of ``scripts/``, ``tests/`` and the
browser SDK's ``sdk/js/src`` and ``sdk/js/test``) is measured by its line count: Python,
and the Lua, JavaScript and TypeScript beside it (the serving scripts in ``api/lua/``, the
dashboard's scripts, the SDK). In Python each function (methods and nested functions
included, each on its own) is also measured, from its ``def`` line to its last line. The
only exceptions are named in :data:`ALLOWED`, each with its reason.

Run: ``python scripts/check_sizes.py`` (exit 1 and one line per problem; it also names the
``ALLOWED`` entries that excuse nothing any more, so the list can shrink).
"""

from __future__ import annotations

import argparse
import ast
import fnmatch
import sys
from collections.abc import Iterator
from pathlib import Path

MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 80
#: Where the rule applies (directories under the repository root).
PACKAGES = ("core", "schemas", "recommender", "stream", "api", "streamrec", "scripts", "tests",
            "sdk/js/src", "sdk/js/test")
#: The source files measured (functions: Python only).
SOURCE_SUFFIXES = frozenset({".py", ".lua", ".js", ".mjs", ".ts"})

#: Modules (glob patterns relative to the root) allowed over either limit, and why.
#: Generated or data-like modules would be named here; there are none today.
ALLOWED: dict[str, str] = {}


def _functions(tree: ast.AST) -> Iterator[ast.FunctionDef | ast.AsyncFunctionDef]:
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            yield node


def oversized(root: Path) -> Iterator[tuple[str, str]]:
    """``(path, problem)`` for every module or function over its limit."""
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*")):
            if path.suffix not in SOURCE_SUFFIXES or "node_modules" in path.parts:
                continue
            rel = path.relative_to(root).as_posix()
            text = path.read_text(encoding="utf-8")
            lines = len(text.splitlines())
            if lines > MAX_MODULE_LINES:
                yield rel, f"module has {lines} lines (limit {MAX_MODULE_LINES})"
            if path.suffix != ".py":
                continue
            for func in _functions(ast.parse(text, filename=rel)):
                size = (func.end_lineno or func.lineno) - func.lineno + 1
                if size > MAX_FUNCTION_LINES:
                    yield rel, (f"function {func.name} (line {func.lineno}) has {size} lines "
                                f"(limit {MAX_FUNCTION_LINES})")


def _excuse(rel: str, allowed: dict[str, str]) -> str | None:
    return next((pattern for pattern in allowed if fnmatch.fnmatch(rel, pattern)), None)


def violations(root: Path, allowed: dict[str, str] | None = None) -> list[str]:
    """One readable line per oversized module or function not in ``allowed``."""
    allowed = ALLOWED if allowed is None else allowed
    return [f"{rel}: {problem}" for rel, problem in oversized(root)
            if _excuse(rel, allowed) is None]


def stale(root: Path, allowed: dict[str, str] | None = None) -> list[str]:
    """The ``allowed`` patterns that excuse nothing today (candidates for removal)."""
    allowed = ALLOWED if allowed is None else allowed
    used = {_excuse(rel, allowed) for rel, _ in oversized(root)}
    return [pattern for pattern in allowed if pattern not in used]


def main(argv: list[str] | None = None) -> int:
    """Print the problems (exit 1 when any)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parent.parent)
    args = parser.parse_args(argv)
    found = violations(args.root)
    for line in found:
        print(line)
    for pattern in stale(args.root):
        print(f"note: {pattern} is within the limits now; its ALLOWED entry can go",
              file=sys.stderr)
    print(f"sizes: {len(found)} problem(s)", file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    raise SystemExit(main())
