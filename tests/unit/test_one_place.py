"""Guards the guide's "one place for each rule and each limit" for named constants: no
two modules of the project define the same upper-case name with the same literal value
(a copy that drifts alone: the revenue unit the worker writes and the report reads, the
latest event time two file readers accept, the stop grace of three stack modules)."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("core", "schemas", "recommender", "stream", "api", "streamrec", "scripts")
#: Same name and value in several modules on purpose, and why.
ALLOWED = {
    "READY_TIMEOUT_S": "the whole stack's readiness and a Redis Cluster's are other waits",
}


def copies(root: Path) -> dict[str, list[str]]:
    """Upper-case module-level constants defined with one literal value in several
    modules: ``"NAME = value"`` → the modules."""
    where: dict[str, list[str]] = defaultdict(list)
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            for node in ast.parse(path.read_text(encoding="utf-8")).body:
                if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant):
                    for target in node.targets:
                        if isinstance(target, ast.Name) and target.id.isupper():
                            key = f"{target.id} = {node.value.value!r}"
                            where[key].append(str(path.relative_to(root)))
    return {key: paths for key, paths in where.items()
            if len(paths) > 1 and key.split(" = ")[0] not in ALLOWED}


def test_no_constant_is_defined_twice() -> None:
    assert copies(ROOT) == {}


def test_the_check_sees_a_copy(tmp_path: Path) -> None:
    for package in ("core", "stream"):
        (tmp_path / package).mkdir()
        (tmp_path / package / "m.py").write_text("LIMIT = 5\nOTHER = 1\n")
    (tmp_path / "stream" / "n.py").write_text("OTHER = 2\n")
    assert copies(tmp_path) == {"LIMIT = 5": ["core/m.py", "stream/m.py"],
                                "OTHER = 1": ["core/m.py", "stream/m.py"]}
