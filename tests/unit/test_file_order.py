"""The longest-first order of test files (``tests/file_order.py``): pure."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from tests.file_order import UNKNOWN_S, heaviest_first, load_weights


@dataclass
class _Item:
    nodeid: str


def _ids(items: list[_Item]) -> list[str]:
    return [item.nodeid for item in items]


def test_files_go_longest_first_and_keep_their_tests_in_order() -> None:
    items = [_Item("tests/a.py::t1"), _Item("tests/a.py::t2"), _Item("tests/b.py::t1[x]"),
             _Item("tests/c.py::t1"), _Item("tests/b.py::t2")]
    ordered = heaviest_first(items, {"tests/a.py": 1.0, "tests/b.py": 30.0, "tests/c.py": 8.0})
    assert _ids(ordered) == ["tests/b.py::t1[x]", "tests/b.py::t2", "tests/c.py::t1",
                             "tests/a.py::t1", "tests/a.py::t2"]


def test_unknown_files_count_as_the_default_and_ties_keep_the_collection_order() -> None:
    items = [_Item("tests/new.py::t"), _Item("tests/old.py::t"), _Item("tests/twin.py::t")]
    weights = {"tests/old.py": UNKNOWN_S - 1, "tests/twin.py": UNKNOWN_S}
    assert _ids(heaviest_first(items, weights)) == [
        "tests/new.py::t", "tests/twin.py::t", "tests/old.py::t"]


def test_without_weights_the_collection_order_stays() -> None:
    items = [_Item("tests/b.py::t"), _Item("tests/a.py::t")]
    assert _ids(heaviest_first(items, {})) == ["tests/b.py::t", "tests/a.py::t"]


def test_a_missing_or_broken_table_gives_no_weights(tmp_path: Path) -> None:
    assert load_weights("tansu", tmp_path / "none.json") == {}
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    assert load_weights("tansu", broken) == {}
    table = tmp_path / "t.json"
    table.write_text(json.dumps({"tansu": {"tests/a.py": 3}, "kafka": []}))
    assert load_weights("tansu", table) == {"tests/a.py": 3.0}
    assert load_weights("kafka", table) == {}


def test_the_table_in_the_repository_names_files_that_exist() -> None:
    root = Path(__file__).resolve().parents[2]
    for leg in ("tansu", "kafka"):
        weights = load_weights(leg)
        missing = [name for name in weights if not (root / name).exists()]
        assert not missing, f"{leg}: re-run scripts/file_durations.py; gone: {missing}"


def test_the_durations_script_sums_each_file_of_a_durations_output() -> None:
    from scripts.file_durations import file_seconds

    text = """============================= slowest durations ==============================
12.50s call     tests/integration/test_a.py::test_one[x-1]
2.00s setup    tests/integration/test_a.py::test_one[x-1]
0.25s teardown tests/unit/test_b.py::test_two
(120 durations < 0.005s hidden.  Use -vv to show these durations.)
[gw0] [ 50%] PASSED tests/integration/test_a.py::test_one[x-1]
"""
    assert file_seconds(text) == {"tests/integration/test_a.py": 14.5,
                                  "tests/unit/test_b.py": 0.25}
