"""Promotions as links of the serve script (api.promotions) and their active window."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from api.promotions import PROMOTED, promotion_links, slots
from core.limits import PROMOTION_SCAN_MAX, PROMOTION_SCAN_TOTAL
from core.redis_keys import RedisKeys
from schemas.merch import Promotion, PromotionBody

NOW = datetime(2026, 12, 1, tzinfo=UTC)
POPULAR = RedisKeys().popular


def promo(pid: str, **fields: object) -> Promotion:
    return Promotion(promotion_id=pid, updated_at=NOW, **fields)  # type: ignore[arg-type]


def test_slots_are_the_ceiling_of_share_times_n() -> None:
    assert [slots(0.2, 10), slots(0.3, 10), slots(0.25, 10), slots(0.01, 10), slots(1.0, 7)] \
        == [2, 3, 3, 1, 7]
    assert slots(1e-12, 10) == 1  # the ceiling of any share above 0, float residue aside


def test_each_active_promotion_is_a_link_taking_its_own_slots() -> None:
    links = promotion_links([promo("a", item_ids=["x", "y"], share=0.2),
                             promo("b", category="coffee", share=0.5)], 10, POPULAR)
    assert links.ids == ("a", "b") and links.specs == (PROMOTED, PROMOTED)
    assert links.links == (
        {"k": "ids", "ids": ["x", "y"], "quota": 2, "scan": 2},
        {"k": "zset", "key": POPULAR, "lc": ["coffee"], "quota": 5,
         "scan": PROMOTION_SCAN_MAX})


def test_links_fit_the_candidate_budget_whatever_their_number() -> None:
    # a promotion that cannot fill its slots does not keep the next one out
    full = promotion_links([promo("a", item_ids=["x"], share=1.0),
                            promo("b", item_ids=["y"], share=0.5)], 4, "k")
    assert full.ids == ("a", "b")
    many = promotion_links([promo(f"p{i}", item_ids=["x"], share=0.01) for i in range(20)],
                           100, "k")
    assert len(many.links) == 20 and {link["scan"] for link in many.links} == {1}
    # a category promotion costs PROMOTION_SCAN_MAX: the fifth no longer fits after a
    # promotion of 100 items, the small one after it does
    assert PROMOTION_SCAN_TOTAL == 5 * PROMOTION_SCAN_MAX
    mixed = promotion_links([promo("big", item_ids=[f"i{i}" for i in range(100)])]
                            + [promo(f"c{i}", category="c") for i in range(5)]
                            + [promo("small", item_ids=["x", "y"])], 10, "k")
    assert mixed.ids == ("big", "c0", "c1", "c2", "c3", "small")
    assert sum(link["scan"] for link in mixed.links) <= PROMOTION_SCAN_TOTAL


def test_a_promotion_is_active_in_its_contexts_and_window() -> None:
    p = promo("a", item_ids=["x"], contexts=["home"], starts_at="2026-11-30T00:00:00",
              ends_at="2026-12-02T00:00:00Z")
    assert p.active("home", NOW) and not p.active("popular", NOW)
    assert not p.active("home", datetime(2026, 11, 29, tzinfo=UTC))
    assert not p.active("home", datetime(2026, 12, 2, tzinfo=UTC))  # ends_at excluded
    assert promo("b", category="c").active("trending", NOW)


@pytest.mark.parametrize("body", [
    {}, {"item_ids": ["x"], "category": "c"}, {"category": "c", "share": 0},
    {"category": "c", "contexts": ["search"]},
    {"category": "c", "starts_at": "2026-12-02T00:00:00Z", "ends_at": "2026-12-01T00:00:00Z"},
])
def test_bodies_name_one_target_a_share_and_a_window_in_order(body: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        PromotionBody.model_validate(body)


def test_duplicate_items_and_contexts_are_kept_once() -> None:
    body = PromotionBody.model_validate({"item_ids": ["x", "y", "x"],
                                         "contexts": ["home", "home"]})
    assert body.item_ids == ["x", "y"] and body.contexts == ["home"]
