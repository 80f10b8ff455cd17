"""The dashboard aggregate's pure parts (api/dashboard_feed.py): chart columns and rates
from samples, shop rows from catalog fields."""

from __future__ import annotations

from api.dashboard_feed import GAP_S, TRENDING_LINES, Sample, item_row, series_columns


def sample(t: float, messages: int, processed: int, trending: tuple[tuple[str, float], ...] = ()
           ) -> Sample:
    return Sample(t=t, messages_in=messages, processed=processed, lag=0, dead_lettered=0,
                  trending=trending)


def test_rates_are_differences_between_consecutive_samples() -> None:
    cols = series_columns([sample(100, 10, 100), sample(102, 14, 160), sample(104, 14, 160)])
    assert cols["t"] == [100, 102, 104]
    assert cols["messages_in_per_s"] == [None, 2.0, 0.0]
    assert cols["events_per_s"] == [None, 30.0, 0.0]


def test_no_rate_across_a_gap_or_a_counter_reset() -> None:
    cols = series_columns([sample(0, 0, 500), sample(GAP_S + 1, 50, 900),
                           sample(GAP_S + 3, 60, 10)])  # a rebuild reset `processed`
    assert cols["messages_in_per_s"] == [None, None, 5.0]
    assert cols["events_per_s"] == [None, None, None]


def test_trending_lines_follow_the_latest_top_items() -> None:
    top = tuple((f"i{k}", 10.0 - k) for k in range(TRENDING_LINES + 2))
    cols = series_columns([sample(0, 0, 0, (("old", 9.0), ("i0", 8.0))), sample(2, 0, 0, top)])
    assert cols["trending"]["items"] == [f"i{k}" for k in range(TRENDING_LINES)]
    assert cols["trending"]["scores"][0] == [8.0, 10.0]
    assert cols["trending"]["scores"][1] == [None, 9.0]
    assert series_columns([])["trending"] == {"items": [], "scores": []}


def test_shop_rows_say_unknown_stock_for_items_outside_the_catalog() -> None:
    row = item_row("sku-1", 3.14159265, ["Tea", "drinks", "4.5", "EUR", "0", "0"])
    assert row == {"item_id": "sku-1", "score": 3.141593, "name": "Tea", "category": "drinks",
                   "price": 4.5, "currency": "EUR", "in_stock": False, "deleted": False}
    unknown = item_row("x", 1.0, [None] * 6)
    assert unknown["in_stock"] is None and unknown["name"] is None
    assert item_row("y", 1.0, ["Y", None, "n/a", None, "1", "1"])["price"] is None
