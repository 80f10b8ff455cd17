"""Ranking metrics against hand-computed cases."""

from __future__ import annotations

import math

import pytest

from recommender.metrics import (
    catalog_coverage,
    hit_rate,
    ndcg,
    paired_difference,
    recall,
    summarize,
)


def test_hit_rate_counts_any_relevant_item_in_the_cut_off() -> None:
    ranked = ["a", "b", "c", "d"]
    assert hit_rate(ranked, {"c"}, 3) == 1.0
    assert hit_rate(ranked, {"d"}, 3) == 0.0  # fourth place is outside @3
    assert hit_rate(ranked, {"x", "b"}, 2) == 1.0
    assert hit_rate(ranked, set(), 10) == 0.0
    assert hit_rate([], {"a"}, 10) == 0.0


def test_ndcg_single_target_is_one_over_log2_of_position_plus_one() -> None:
    ranked = ["a", "b", "c", "d", "e"]
    assert ndcg(ranked, {"a"}, 10) == 1.0
    assert ndcg(ranked, {"b"}, 10) == pytest.approx(1 / math.log2(3))  # 0.6309
    assert ndcg(ranked, {"d"}, 10) == pytest.approx(1 / math.log2(5))  # 0.4307
    assert ndcg(ranked, {"e"}, 4) == 0.0


def test_ndcg_with_several_relevant_items() -> None:
    # Hits at positions 1 and 3 out of 3 relevant items, @5:
    # DCG = 1 + 1/log2(4) = 1.5; IDCG = 1 + 1/log2(3) + 1/log2(4) = 2.1309.
    value = ndcg(["a", "x", "b", "y", "z"], {"a", "b", "c"}, 5)
    assert value == pytest.approx(1.5 / (1 + 1 / math.log2(3) + 0.5))
    assert value == pytest.approx(0.70392, abs=1e-5)
    # IDCG is capped at k hits: 5 relevant items but k = 2, both hit -> perfect.
    assert ndcg(["a", "b"], {"a", "b", "c", "d", "e"}, 2) == pytest.approx(1.0)


def test_repeated_ids_count_once() -> None:
    assert ndcg(["a", "a", "b"], {"a", "b"}, 3) == pytest.approx(
        (1 + 1 / math.log2(4)) / (1 + 1 / math.log2(3))
    )
    assert recall(["a", "a"], {"a", "b"}, 2) == 0.5


def test_recall_denominator_is_capped_at_k() -> None:
    relevant = {"a", "b", "c", "d"}
    assert recall(["a", "x", "b"], relevant, 3) == pytest.approx(2 / 3)  # min(3, 4) = 3
    assert recall(["a", "x", "b", "c", "d"], relevant, 5) == pytest.approx(4 / 4)
    assert recall(["a", "x"], {"a"}, 20) == 1.0  # single target: recall == hit
    assert recall(["a"], set(), 20) == 0.0


def test_coverage_counts_distinct_items_in_top_k() -> None:
    lists = [["a", "b", "c"], ["b", "d", "e"], []]
    assert catalog_coverage(lists, 10, 2) == pytest.approx(3 / 10)  # a, b, d
    assert catalog_coverage(lists, 10, 3) == pytest.approx(5 / 10)
    assert catalog_coverage(lists, 0, 3) == 0.0


def test_invalid_cut_off_is_rejected() -> None:
    for fn in (hit_rate, ndcg, recall):
        with pytest.raises(ValueError):
            fn(["a"], {"a"}, 0)


def test_summary_mean_and_standard_error() -> None:
    s = summarize([1.0, 0.0, 0.0, 1.0])
    assert s.mean == 0.5
    assert s.n == 4
    # sample sd = sqrt(1/3); se = sd / 2
    assert s.stderr == pytest.approx(math.sqrt(1 / 3) / 2)
    assert summarize([]).n == 0
    assert summarize([0.3]).stderr == 0.0


def test_paired_difference_counts_one_sided_wins_and_brackets_the_mean() -> None:
    a = [1.0, 1.0, 0.0, 0.0, 1.0] * 40
    b = [1.0, 0.0, 0.0, 1.0, 0.0] * 40
    d = paired_difference(a, b, seed=1, resamples=500)
    assert (d.a_only, d.b_only) == (80, 40)
    assert d.mean == pytest.approx(0.2)
    assert d.low < 0.2 < d.high
    same = paired_difference([0.5] * 10, [0.5] * 10)
    assert (same.mean, same.low, same.high) == (0.0, 0.0, 0.0)
    with pytest.raises(ValueError):
        paired_difference([1.0], [1.0, 2.0])
