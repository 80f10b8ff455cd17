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


def test_the_check_sees_type_checking_blocks_and_imports_by_name(tmp_path: Path) -> None:
    for package in ("core", "stream", "recommender"):
        (tmp_path / package).mkdir()
    (tmp_path / "core" / "hint.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from stream.worker import x\n")
    (tmp_path / "stream" / "lazy.py").write_text(
        "import importlib\n\ndef f():\n    return importlib.import_module('api.app')\n\n"
        "def g():\n    return __import__('streamrec.cli')\n")
    (tmp_path / "recommender" / "named.py").write_text(
        "from importlib import import_module\n\ndef f(name):\n"
        "    return import_module(f'core.{name}'), import_module(f'recommender.{name}')\n")
    assert violations(tmp_path) == [
        "core/hint.py:3: core imports stream; core may import only no package of ours",
        "recommender/named.py:4: recommender imports core (inside a function); "
        "recommender may import only no package of ours",
        "stream/lazy.py:4: stream imports api (inside a function); "
        "stream may import only core, recommender, schemas",
        "stream/lazy.py:7: stream imports streamrec (inside a function); "
        "stream may import only core, recommender, schemas",
    ]


def test_scripts_may_not_import_tests(tmp_path: Path) -> None:
    (tmp_path / "scripts").mkdir()
    (tmp_path / "scripts" / "tool.py").write_text(
        "from streamrec.cli import main\nfrom tests.polling import wait_for\n")
    assert violations(tmp_path) == [
        "scripts/tool.py:2: scripts imports tests; scripts may import only "
        "api, core, recommender, schemas, stream, streamrec",
    ]
