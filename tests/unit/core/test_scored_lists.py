"""Parsing of the prepared lists the worker stores and reads back (core.scored_lists)."""

from __future__ import annotations

from typing import Any

import orjson

from core.scored_lists import parse_recent, parse_scored_json, valid_id


def test_parse_scored_json_tolerates_bad_input() -> None:
    doc = {"v": "m1", "ts": 1.0, "items": [["a", 0.5], ["b", 0.9], ["", 1], ["x" * 257, 1],
                                           [3, 1], ["c", "nan"], ["d"], ["e", None],
                                           {"item_id": "f", "score": 0.7}, ["g", True]]}
    assert parse_scored_json(orjson.dumps(doc)) == [("b", 0.9), ("f", 0.7), ("a", 0.5)]
    assert parse_scored_json(orjson.dumps([["a", 1]])) == [("a", 1.0)]
    for bad in (None, "", "not json", "{}", '{"items": 3}', "[1, 2]"):
        assert parse_scored_json(bad) == []


def test_parse_recent() -> None:
    assert parse_recent(orjson.dumps(["a", "b", "a", 1, "", "c"]), limit=2) == ["a", "b"]
    assert parse_recent("garbage") == [] and parse_recent(orjson.dumps({"a": 1})) == []


def test_valid_id() -> None:
    assert valid_id("a") and valid_id("x" * 256)
    assert not valid_id("") and not valid_id("x" * 257) and not valid_id(3)


def test_well_formed_lists_parse_the_same_on_the_fast_path(monkeypatch: Any) -> None:
    import random

    from core import scored_lists

    rng = random.Random(4)
    docs: list[Any] = []
    for _ in range(200):
        n = rng.randint(0, 12)
        scores = sorted((rng.choice([0.5, 1.0, rng.random()]) for _ in range(n)), reverse=True)
        entries: list[Any] = [[f"i{rng.randint(0, 9)}", s, "similar"] for s in scores]
        kind = rng.randint(0, 7)
        if entries and kind == 1:
            entries[rng.randrange(len(entries))][1] = 3  # an int score
        elif entries and kind == 2:
            entries[rng.randrange(len(entries))][0] = ""  # an invalid id
        elif entries and kind == 3:
            entries.reverse()  # not best first
        elif entries and kind == 4:
            entries[rng.randrange(len(entries))] = {"item_id": "d", "score": 1.0}
        elif entries and kind == 5:
            entries[rng.randrange(len(entries))][1] = True
        docs.append({"v": "x", "items": entries} if rng.random() < 0.7 else entries)
    fast = [scored_lists.parse_scored_json(orjson.dumps(d)) for d in docs]
    monkeypatch.setattr(scored_lists, "_well_formed", lambda items: None)
    slow = [scored_lists.parse_scored_json(orjson.dumps(d)) for d in docs]
    assert fast == slow
    assert [type(s) for pairs in fast for _, s in pairs] == [float] * sum(map(len, fast))
