"""The production blend: rank fusion, exclusions, fallbacks, evidence and recency."""

from __future__ import annotations

import pytest

from recommender.blend import BlendWeights, blend, merge_recent, merge_summed

FLAT = BlendWeights(personal=1.0, session=1.0, similar=1.0, trending=1.0, popular=1.0,
                    rank_offset=0.0)


def ids(items: list) -> list:
    return [b.item_id for b in items]


def test_single_source_keeps_its_order_and_scores_are_reciprocal_ranks() -> None:
    out = blend(n=3, personal=[("a", 9.0), ("b", 5.0), ("c", 1.0)], weights=FLAT)
    assert ids(out) == ["a", "b", "c"]
    assert [b.score for b in out] == pytest.approx([1.0, 0.5, 1 / 3])
    assert {b.source for b in out} == {"personal"}


def test_agreement_between_sources_lifts_an_item() -> None:
    # "b" is second in both lists: 1/2 + 1/2 = 1 beats "a" (1) on ties by chain order,
    # and beats "x" (1) likewise; "a" came first, so stable order keeps it ahead.
    out = blend(n=4, personal=[("a", 1), ("b", 1)], session=[("x", 1), ("b", 1)],
                weights=FLAT)
    assert ids(out) == ["a", "b", "x"]
    assert out[1].score == pytest.approx(1.0)
    w = BlendWeights(personal=1.0, session=1.0, similar=0, trending=0, popular=0,
                     rank_offset=1.0)
    # With offset 1: a = 1/2, b = 1/3 + 1/3 = 2/3, x = 1/2 -> b first.
    assert ids(blend(n=3, personal=[("a", 1), ("b", 1)], session=[("x", 1), ("b", 1)],
                     weights=w)) == ["b", "a", "x"]


def test_excluded_items_are_dropped_before_ranks_are_counted() -> None:
    out = blend(n=2, personal=[("seen", 1), ("a", 1)], popular=[("b", 1)],
                exclude={"seen"}, weights=FLAT)
    assert ids(out) == ["a", "b"]
    assert out[0].score == pytest.approx(1.0)  # "a" is rank 1 once "seen" is gone


def test_fallbacks_fill_the_list_and_zero_weight_switches_a_source_off() -> None:
    w = BlendWeights(personal=1.0, session=0.0, similar=0.0, trending=0.1, popular=0.05)
    out = blend(n=5, personal=[("a", 1)], session=[("s", 1)],
                trending=[("t1", 1), ("t2", 1)], popular=[("p1", 1), ("t1", 1)], weights=w)
    assert ids(out) == ["a", "t1", "t2", "p1"]
    assert out[1].source == "trending"
    assert blend(n=0, personal=[("a", 1)]) == []
    assert blend(n=3) == []


def test_repeated_ids_in_one_source_count_once() -> None:
    out = blend(n=3, personal=[("a", 1), ("a", 1), ("b", 1)], weights=FLAT)
    assert ids(out) == ["a", "b"]
    assert out[1].score == pytest.approx(0.5)


def test_evidence_shrinks_the_personal_weight_for_short_histories() -> None:
    w = BlendWeights(personal=1.0, session=1.0, similar=0, trending=0, popular=0,
                     rank_offset=0.0, evidence=3.0)
    lists = {"personal": [("p", 1)], "session": [("s", 1)]}
    # h = 1: personal weight 1 * 1/4 < session 1.
    assert ids(blend(n=2, weights=w, history_size=1, **lists)) == ["s", "p"]
    # h = 9: personal weight 9/12 = 0.75, still below the session's 1.
    assert blend(n=2, weights=w, history_size=9, **lists)[1].score == pytest.approx(0.75)
    assert ids(blend(n=2, weights=w, **lists)) == ["p", "s"]  # no history size: unscaled


def test_merge_recent_weights_newer_items_more() -> None:
    newest = [("x", 1.0), ("y", 0.5)]
    older = [("y", 2.0)]
    assert merge_summed([newest, older]) == [("y", 2.5), ("x", 1.0)]
    # recency 3: the older list counts 1/4 -> y = 0.5 + 0.5 = 1.0 ties x, x seen first.
    assert merge_recent([newest, older], recency=3.0) == [("x", 1.0), ("y", 1.0)]
    assert merge_recent([newest, older], recency=9.0)[0] == ("x", 1.0)


def test_weights_reject_negatives_and_unknown_sources() -> None:
    with pytest.raises(ValueError):
        BlendWeights(personal=-1.0)
    with pytest.raises(KeyError):
        BlendWeights().of("nope")


def test_works_for_any_hashable_ids() -> None:
    out = blend(n=2, personal=[(3, 0.1), (7, 0.0)], session=[(7, 1.0)], weights=FLAT)
    assert ids(out) == [7, 3]
