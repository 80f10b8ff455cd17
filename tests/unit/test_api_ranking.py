"""Pure serving logic of the API: chains, list decoding, filters, blend scores."""

from __future__ import annotations

import itertools
import math
from typing import Any

import orjson
import pytest

from api.ranking import (
    PERSONALIZED,
    POPULAR,
    SIMILAR_COOC,
    SIMILAR_MODEL,
    USER_CHAIN,
    ItemMeta,
    Normalizer,
    blend_score,
    decay_factor,
    merge_summed,
    parse_meta,
    servable,
    user_chain,
    zset_pairs,
)
from core.scored_lists import parse_recent, parse_scored_json, valid_id


def test_user_chain_is_data() -> None:
    assert user_chain("home", None) == ("home", USER_CHAIN)
    assert user_chain(None, "sku") == ("home", USER_CHAIN)
    assert user_chain("search", None) == ("home", USER_CHAIN)
    assert user_chain("product", None) == ("home", USER_CHAIN)
    context, chain = user_chain("product", "sku")
    assert context == "product" and chain[2:] == USER_CHAIN
    assert [(s.kind, s.rerank) for s in chain[:2]] == [
        (SIMILAR_MODEL.kind, True), (SIMILAR_COOC.kind, True)]
    assert user_chain("cart", None)[1][0].kind == "complements"
    assert [s.kind for s in user_chain("checkout", "x")[1][:2]] == ["buy_again", "complements"]
    assert USER_CHAIN[0] == PERSONALIZED and USER_CHAIN[-1] == POPULAR
    assert [s.reason for s in USER_CHAIN] == ["personalized", "session", "popular"]


def blended(sources: list[list[float]]) -> list[float]:
    """Scores of a chain whose sources hold these raw scores (best first), in order."""
    out = []
    for index, raws in enumerate(sources):
        band = len(sources) - 1 - index
        norm = Normalizer(raws)
        out += [blend_score(band, norm(raw), pos) for pos, raw in enumerate(raws)]
    return out


@pytest.mark.parametrize("sources", [
    [[0.9, 0.5, 0.1], [300.0, 2.0], [5.0, 5.0, 5.0]],  # incomparable scales, ties
    [[-0.1, -0.2, -5.0], [1.0], [0.0, 0.0]],  # negative ALS scores, zeros
    [[1.0] * 50, [7.0] * 50],  # all equal
    [[], [3.0, 1.0], []],  # empty sources
])
def test_blend_is_strictly_descending_and_keeps_source_rank(sources: list[list[float]]) -> None:
    scores = blended(sources)
    assert all(a > b for a, b in itertools.pairwise(scores))
    assert all(math.isfinite(s) and s > 0 for s in scores)


def test_later_pages_stay_below_the_first() -> None:
    norm = Normalizer([10.0, 8.0, 6.0])  # fixed by page one
    page_two = [5.0, 5.0, 1.0]
    scores = [blend_score(0, norm(r), p) for p, r in enumerate([10.0, 8.0, 6.0, *page_two])]
    assert all(a > b for a, b in itertools.pairwise(scores))
    assert 0 < scores[-1] and scores[0] <= 1


def test_parse_scored_json_tolerates_bad_input() -> None:
    doc = {"v": "m1", "ts": 1.0, "items": [["a", 0.5], ["b", 0.9], ["", 1], ["x" * 257, 1],
                                           [3, 1], ["c", "nan"], ["d"], ["e", None],
                                           {"item_id": "f", "score": 0.7}, ["g", True]]}
    assert parse_scored_json(orjson.dumps(doc)) == [("b", 0.9), ("f", 0.7), ("a", 0.5)]
    assert parse_scored_json(orjson.dumps([["a", 1]])) == [("a", 1.0)]
    for bad in (None, "", "not json", "{}", '{"items": 3}', "[1, 2]"):
        assert parse_scored_json(bad) == []


def test_parse_recent_and_zset_pairs() -> None:
    assert parse_recent(orjson.dumps(["a", "b", "a", 1, "", "c"]), limit=2) == ["a", "b"]
    assert parse_recent("garbage") == [] and parse_recent(orjson.dumps({"a": 1})) == []
    assert zset_pairs([("a", 2.0), ("b", float("inf")), ("", 1.0), ("c", 1.0)]) == [
        ("a", 2.0), ("c", 1.0)]
    assert zset_pairs(None) == []


def test_merge_summed() -> None:
    merged = merge_summed([[("s1", 3.0), ("s2", 1.0)], [("s2", 3.0), ("s3", 1.0)], []])
    assert merged == [("s2", 4.0), ("s1", 3.0), ("s3", 1.0)]
    assert merge_summed([[("b", 1.0)], [("a", 1.0)]]) == [("a", 1.0), ("b", 1.0)]


def test_decay_factor() -> None:
    assert decay_factor(1000.0, "1000", 100.0) == 1.0
    assert decay_factor(1100.0, "1000", 100.0) == pytest.approx(0.5)
    assert decay_factor(1000.0, b"1100", 100.0) == pytest.approx(2.0)
    assert decay_factor(1000.0, None, 100.0) == 1.0
    assert decay_factor(1000.0, "bogus", 100.0) == 1.0
    assert math.isfinite(decay_factor(1e12, "0", 1.0))


def test_meta_and_servable() -> None:
    absent = parse_meta({})
    assert absent == ItemMeta(present=False)
    assert servable(absent, unavailable=False, require_catalog=False)
    assert not servable(absent, unavailable=False, require_catalog=True)
    meta = parse_meta({"name": "Mug", "price": "4.5", "currency": "EUR", "category": "c",
                       "in_stock": "1", "deleted": "0", "properties": "{}"})
    assert (meta.name, meta.price, meta.in_stock, meta.deleted) == ("Mug", 4.5, True, False)
    assert servable(meta, unavailable=False, require_catalog=True)
    assert not servable(meta, unavailable=True, require_catalog=False)
    assert not servable(parse_meta({"in_stock": "0"}), unavailable=False, require_catalog=False)
    assert not servable(parse_meta({"in_stock": "false"}), unavailable=False,
                        require_catalog=False)
    assert not servable(parse_meta({"deleted": "1"}), unavailable=False, require_catalog=False)
    assert parse_meta({"price": "free"}).price is None
    assert parse_meta({"price": "-1"}).price is None
    assert parse_meta({"price": "inf"}).price is None


def test_valid_id() -> None:
    assert valid_id("a") and valid_id("x" * 256)
    assert not valid_id("") and not valid_id("x" * 257) and not valid_id(3)


def test_well_formed_lists_parse_the_same_on_the_fast_path(monkeypatch: Any) -> None:
    import random

    from core import scored_lists as ranking

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
    fast = [ranking.parse_scored_json(orjson.dumps(d)) for d in docs]
    monkeypatch.setattr(ranking, "_well_formed", lambda items: None)
    slow = [ranking.parse_scored_json(orjson.dumps(d)) for d in docs]
    assert fast == slow
    assert [type(s) for pairs in fast for _, s in pairs] == [float] * sum(map(len, fast))
