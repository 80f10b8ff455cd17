"""The merchandising parameters (api.filters): parsing, the category rule, and the
fallback snapshot's Python copy of the serve script's rules."""

from __future__ import annotations

import pytest

from api.errors import ValidationFailed
from api.filters import (
    UNCAPPED,
    FallThrough,
    Merch,
    category_matches,
    make_merch,
    parse_fast,
    script_fields,
    snapshot_items,
)
from core.limits import FILTER_SCAN_MAX


def test_no_parameter_means_no_merch() -> None:
    assert make_merch() is None
    assert parse_fast({}) is None


def test_categories_are_comma_lists_trimmed_and_distinct() -> None:
    merch = make_merch(["a, b", "a", " c "])
    assert merch == Merch(categories=("a", "b", "c"))
    assert merch.filtered


@pytest.mark.parametrize("kwargs", [
    {"categories": [""]}, {"categories": [" , "]}, {"price_min": -1.0},
    {"price_min": 3.0, "price_max": 2.0}, {"price_max": float("nan")}, {"cap": 0},
    {"categories": [",".join(f"c{i}" for i in range(21))]}, {"categories": ["x" * 257]},
])
def test_invalid_values_are_validation_errors(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValidationFailed):
        make_merch(**kwargs)  # type: ignore[arg-type]


def test_a_price_bound_above_every_price_is_valid() -> None:
    assert make_merch(price_min=1e13, price_max=1e300) == Merch(price_min=1e13,
                                                                 price_max=1e300)


def test_a_cap_above_the_largest_n_is_valid_and_kept_as_no_tighter_than_n() -> None:
    assert make_merch(cap=101) == Merch(cap=100)
    assert make_merch(cap=10**30) == Merch(cap=100)
    assert parse_fast({"max_per_category": ["999"]}) == Merch(cap=100)


def test_the_fast_path_reads_only_what_fastapi_reads_the_same_way() -> None:
    assert parse_fast({"price_min": ["1.50"], "max_per_category": ["3"], "explain": ["1"]}) == \
        Merch(price_min=1.5, cap=3, explain=True)
    assert parse_fast({"explain": ["false", "true"]}) == Merch(explain=True)
    assert parse_fast({"max_per_category": ["9", "2"]}) == Merch(cap=2)  # the last wins
    for raw in ({"price_min": ["1e3"]}, {"price_min": [" 5"]}, {"explain": ["yes"]},
                {"max_per_category": ["0"]}, {"max_per_category": ["0x1"]},
                {"category": [""]}, {"price_min": ["5"], "price_max": ["4"]}):
        with pytest.raises(FallThrough):
            parse_fast(raw)


def test_the_category_rule_matches_sub_categories_at_a_dot_only() -> None:
    assert category_matches("electronics", ["electronics"])
    assert category_matches("electronics.audio.hifi", ["electronics"])
    assert category_matches("electronics.audio", ["books", "electronics.audio"])
    assert not category_matches("electronicsx", ["electronics"])
    assert not category_matches("electronics", ["electronics.audio"])
    assert not category_matches(None, ["electronics"])
    assert not category_matches("", [""])


def test_script_fields_read_deeper_only_when_something_filters_or_caps() -> None:
    assert script_fields(None, 0, 500, 0) == {}
    assert script_fields(Merch(explain=True), 0, 500, 0) == {"x": True}
    assert script_fields(None, 2, 500, 3) == {"k": 2, "scan": FILTER_SCAN_MAX + 3}
    assert script_fields(UNCAPPED, 2, 500, 0) == {}
    assert script_fields(Merch(categories=("a",), price_min=1.0, cap=1), 4, 500, 0) == {
        "k": 1, "f": {"cat": ["a"], "pmin": 1.0}, "scan": FILTER_SCAN_MAX}


def test_the_snapshot_applies_filters_and_the_cap() -> None:
    items = [{"item_id": f"i{n}", "category": ["a", "a.b", "c", None][n % 4],
              "price": float(n) if n % 5 else None} for n in range(20)]
    got = snapshot_items(items, 10, frozenset({"i1"}), Merch(categories=("a",)), 0)
    assert [i["item_id"] for i in got] == ["i0", "i4", "i5", "i8", "i9", "i12", "i13",
                                           "i16", "i17"]
    got = snapshot_items(items, 10, frozenset(), Merch(price_min=3.0, price_max=8.0), 1)
    # i3 and i7 have no category (never capped); i8 is a second "a"
    assert [i["item_id"] for i in got] == ["i3", "i4", "i6", "i7"]
    assert len(snapshot_items(items, 3, frozenset(), None, 0)) == 3
