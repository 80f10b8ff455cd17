"""Pure serving logic of the API: fallback chains and chain scores.

The serving filters and list decoding run in Lua inside Redis; they are tested on a real
redis-server in ``tests/integration/api/test_serve_script.py``."""

from __future__ import annotations

import itertools
import math

import pytest

from api.ranking import (
    CONTEXT_CHAINS,
    NEW_ITEMS,
    PERSONALIZED,
    POPULAR,
    SIMILAR_COOC,
    SIMILAR_MODEL,
    USER_CHAIN,
    Normalizer,
    chain_score,
    decay_factor,
    user_chain,
)


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
    assert USER_CHAIN[0] == PERSONALIZED and USER_CHAIN[-2:] == (POPULAR, NEW_ITEMS)
    assert [s.reason for s in USER_CHAIN] == ["personalized", "session", "popular", "new"]


def test_every_chain_ends_with_the_newest_items_after_popular_or_trending() -> None:
    from api.ranking import POPULAR_CHAIN, SIMILAR_CHAIN, TRENDING_CHAIN
    for chain in (*CONTEXT_CHAINS.values(), POPULAR_CHAIN, SIMILAR_CHAIN, TRENDING_CHAIN):
        assert chain[-1] is NEW_ITEMS and chain[-2].kind in ("popular", "trending")
    # a list of only these is a popular one (API.md's sources are unchanged)
    assert NEW_ITEMS.source == "popular"


def chained(sources: list[list[float]]) -> list[float]:
    """Scores of a chain whose sources hold these raw scores (best first), in order."""
    out = []
    for index, raws in enumerate(sources):
        band = len(sources) - 1 - index
        norm = Normalizer(raws)
        out += [chain_score(band, norm(raw), pos) for pos, raw in enumerate(raws)]
    return out


@pytest.mark.parametrize("sources", [
    [[0.9, 0.5, 0.1], [300.0, 2.0], [5.0, 5.0, 5.0]],  # incomparable scales, ties
    [[-0.1, -0.2, -5.0], [1.0], [0.0, 0.0]],  # negative ALS scores, zeros
    [[1.0] * 50, [7.0] * 50],  # all equal
    [[], [3.0, 1.0], []],  # empty sources
])
def test_chain_score_is_strictly_descending_and_keeps_source_rank(
        sources: list[list[float]]) -> None:
    scores = chained(sources)
    assert all(a > b for a, b in itertools.pairwise(scores))
    assert all(math.isfinite(s) and s > 0 for s in scores)


def test_later_pages_stay_below_the_first() -> None:
    norm = Normalizer([10.0, 8.0, 6.0])  # fixed by page one
    page_two = [5.0, 5.0, 1.0]
    scores = [chain_score(0, norm(r), p) for p, r in enumerate([10.0, 8.0, 6.0, *page_two])]
    assert all(a > b for a, b in itertools.pairwise(scores))
    assert 0 < scores[-1] and scores[0] <= 1


def test_decay_factor() -> None:
    assert decay_factor(1000.0, "1000", 100.0) == 1.0
    assert decay_factor(1100.0, "1000", 100.0) == pytest.approx(0.5)
    assert decay_factor(1000.0, b"1100", 100.0) == pytest.approx(2.0)
    assert decay_factor(1000.0, None, 100.0) == 1.0
    assert decay_factor(1000.0, "bogus", 100.0) == 1.0
    assert math.isfinite(decay_factor(1e12, "0", 1.0))
