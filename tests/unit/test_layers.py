"""Guards the layer order of ARCHITECTURE.md: imports only go down, also inside functions."""

from __future__ import annotations

from pathlib import Path

from scripts.check_layers import violations

ROOT = Path(__file__).resolve().parents[2]


def test_no_import_goes_up_or_sideways_in_the_layer_order() -> None:
    assert violations(ROOT) == []


def test_the_check_sees_imports_inside_functions(tmp_path: Path) -> None:
    (tmp_path / "stream").mkdir()
    (tmp_path / "stream" / "bad.py").write_text("def f():\n    import api.app\n")
    assert violations(tmp_path) == [
        "stream/bad.py:2: stream imports api (inside a function); "
        "stream may import only core, recommender, schemas"
    ]
