"""A purchase's revenue in an experiment report: price × quantity, in micro-units; the
events an experiment counts."""

from __future__ import annotations

import pytest

from recommender.handover import BOUGHT_COPY_PREFIX, CART_COPY_PREFIX, _copy_id
from schemas import TopicEvent
from stream.experiments import MAX_EVENT_MICRO, MICRO, outcome_records, revenue_micro


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


def test_the_copies_an_identify_hands_over_count_in_no_experiment() -> None:
    # A purchase or cart addition beyond the history cap is handed to the user as a copy
    # with an id of its own: the original counted (as itself), the copy must not again.
    copies = [TopicEvent(event_id=_copy_id(prefix, "sku-1"), type=etype, user_id="u1",
                         anonymous_id="a1", item_id="sku-1", ts=1.0e9, forwarded=True)
              for prefix, etype in ((BOUGHT_COPY_PREFIX, "purchase"),
                                    (CART_COPY_PREFIX, "add_to_cart"))]
    forwarded = copies[1].model_copy(update={"event_id": "e7"})
    records, _ = outcome_records([*copies, forwarded])
    assert [r[4] for r in records] == ["add_to_cart"]  # only the forwarded original
