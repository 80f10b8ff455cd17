"""Co-occurrence increments of one interaction."""

from __future__ import annotations

import numpy as np
import pytest

from recommender.cooccurrence import cooccurrence_pairs, normalize_cooc


def test_pairs_are_symmetric_and_decay_with_recency_rank() -> None:
    pairs = cooccurrence_pairs("new", ["a", "new", "b", "a", "c"], weight=2.0, window=10)
    assert pairs == [
        ("new", "a", 2.0),
        ("a", "new", 2.0),
        ("new", "b", pytest.approx(2.0 / 1.1)),
        ("b", "new", pytest.approx(2.0 / 1.1)),
        ("new", "c", pytest.approx(2.0 / 1.2)),
        ("c", "new", pytest.approx(2.0 / 1.2)),
    ]


def test_window_limits_distinct_partners() -> None:
    recent = [f"i{k}" for k in range(30)]
    pairs = cooccurrence_pairs("x", recent, weight=1.0, window=20)
    assert len(pairs) == 40
    assert {b for a, b, _ in pairs if a == "x"} == {f"i{k}" for k in range(20)}
    assert pairs[-1][2] == pytest.approx(1.0 / 2.9)


def test_no_pairs_for_nothing_to_pair_or_no_weight() -> None:
    assert cooccurrence_pairs("x", [], weight=1.0, window=5) == []
    assert cooccurrence_pairs("x", ["x", "x"], weight=1.0, window=5) == []
    assert cooccurrence_pairs("x", ["a"], weight=0.0, window=5) == []
    assert cooccurrence_pairs("x", ["a"], weight=1.0, window=0) == []


def test_normalize_cooc_divides_by_geometric_mean_of_counts() -> None:
    got = normalize_cooc([4.0, 4.0, 1.0], count=4.0, partner_counts=[4.0, 16.0, 0.0])
    np.testing.assert_allclose(got, [1.0, 0.5, 0.0])
