"""A purchase's revenue in an experiment report: price × quantity, in micro-units."""

from __future__ import annotations

import pytest

from schemas import TopicEvent
from stream.experiments import MAX_EVENT_MICRO, MICRO, revenue_micro


def purchase(price: float | None, quantity: int | None) -> TopicEvent:
    """A purchase on the topic, as the worker reads it."""
    return TopicEvent(event_id="e1", type="purchase", user_id="u1", item_id="sku-1",
                      price=price, quantity=quantity, ts=1.0e9)


@pytest.mark.parametrize(("price", "quantity", "revenue"), [
    (9.99, None, 9.99), (19.99, 3, 59.97), (0.1, 3, 0.3),
    # more than six decimals: price × quantity, not the rounded price × quantity
    (0.0000015, 1_000_000, 1.5), (0.333333333, 1000, 333.333333),
    (1234.5678901, 7, 8641.9752307), (0.0000001, 10, 0.000001),
])
def test_revenue_is_price_times_quantity_to_the_micro_unit(
        price: float, quantity: int | None, revenue: float) -> None:
    assert revenue_micro(purchase(price, quantity)) == round(revenue * MICRO)


def test_no_price_adds_nothing_and_a_huge_one_is_capped() -> None:
    assert revenue_micro(purchase(None, 5)) == 0
    assert revenue_micro(purchase(1e12, 1_000_000)) == MAX_EVENT_MICRO
