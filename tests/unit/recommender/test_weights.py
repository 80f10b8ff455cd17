"""Event weights for the interaction matrix and for popularity scores."""

from __future__ import annotations

import math

import pytest

from recommender.weights import (
    EVENT_WEIGHTS,
    POPULARITY_WEIGHTS,
    event_weight,
    popularity_weight,
)


def test_table_values() -> None:
    assert EVENT_WEIGHTS == {
        "view": 1.0,
        "click": 1.0,
        "add_to_cart": 3.0,
        "purchase": 6.0,
        "remove_from_cart": -2.0,
        "impression": 0.0,
    }
    assert POPULARITY_WEIGHTS["remove_from_cart"] == 0.0
    assert all(w >= 0.0 for w in POPULARITY_WEIGHTS.values())
    assert {k: v for k, v in POPULARITY_WEIGHTS.items() if k != "remove_from_cart"} == {
        k: v for k, v in EVENT_WEIGHTS.items() if k != "remove_from_cart"
    }


@pytest.mark.parametrize(
    ("quantity", "expected"),
    [(None, 6.0), (1, 6.0), (2, 6.0 * (1 + math.log(2))), (10, 6.0 * (1 + math.log(10)))],
)
def test_purchase_grows_sublinearly_with_quantity(quantity: int | None, expected: float) -> None:
    assert event_weight("purchase", quantity) == pytest.approx(expected)
    assert popularity_weight("purchase", quantity) == pytest.approx(expected)
    if quantity:
        assert event_weight("purchase", quantity) <= 6.0 * quantity


def test_other_types_ignore_quantity_and_unknown_is_zero() -> None:
    assert event_weight("add_to_cart", 5) == 3.0
    assert event_weight("remove_from_cart", 5) == -2.0
    assert popularity_weight("remove_from_cart", 5) == 0.0
    assert event_weight("impression") == 0.0
    assert event_weight("identify") == 0.0
    assert event_weight("no-such-type", 3) == 0.0
    assert popularity_weight("no-such-type") == 0.0
