"""The first freshness level (recommender.blend_quick): a stored list reacts to a new
event cheaply — the newest item's neighbours fused in by the blend's rank rule, touched
items out — in the blend's order and without duplicates."""

from __future__ import annotations

import pytest

from recommender.blend import DEFAULT_WEIGHTS
from recommender.blend_quick import quick_list

STORED = [("a", 0.30, "personalized"), ("b", 0.20, "session"), ("c", 0.10, "trending")]


def test_neighbours_join_with_the_similar_sources_rank_gain() -> None:
    out = quick_list(STORED, ["x", "c"], exclude=(), n=10)
    gain = [DEFAULT_WEIGHTS.similar / (DEFAULT_WEIGHTS.rank_offset + r) for r in (1, 2)]
    assert dict((i, s) for i, s, _ in out) == {"a": 0.30, "b": 0.20, "c": 0.10 + gain[1],
                                               "x": gain[0]}
    assert [s for _, s, _ in out] == sorted((s for _, s, _ in out), reverse=True)


def test_a_new_neighbour_says_similar_and_a_listed_one_keeps_its_reason() -> None:
    reasons = {i: r for i, _, r in quick_list(STORED, ["x", "c"], exclude=(), n=10)}
    assert reasons["x"] == "similar" and reasons["c"] == "trending"


def test_touched_items_leave_the_list_and_are_not_brought_back() -> None:
    out = quick_list(STORED, ["a", "x", "x"], exclude={"a", "b"}, n=10)
    ids = [i for i, _, _ in out]
    assert "a" not in ids and "b" not in ids and ids.count("x") == 1


def test_the_list_keeps_its_length_and_ties_keep_the_stored_order() -> None:
    tied = [("a", 0.1, "personalized"), ("b", 0.1, "personalized")]
    assert [i for i, _, _ in quick_list(tied, [], exclude=(), n=10)] == ["a", "b"]
    assert len(quick_list(STORED, ["x", "y"], exclude=(), n=3)) == 3


@pytest.mark.parametrize("n", [0, -1])
def test_no_items_asked_none_given(n: int) -> None:
    assert quick_list(STORED, ["x"], exclude=(), n=n) == []


def test_repeated_or_reasonless_stored_entries_read_as_the_first_and_personal() -> None:
    stored = [["a", 0.3], ["b", 0.2, "trending"], ["a", 0.1, "session"]]
    out = quick_list(stored, ["b"], exclude=(), n=10)
    assert [(i, r) for i, _, r in out] == [("a", "personalized"), ("b", "trending")]
    # The same list without the repeat and with its reasons: the same answer.
    plain = [["a", 0.3, "personalized"], ["b", 0.2, "trending"]]
    assert [tuple(e) for e in quick_list(plain, ["b"], exclude=(), n=10)] == \
        [tuple(e) for e in out]
