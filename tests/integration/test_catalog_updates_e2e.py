"""A merchant's catalog sync through the running system (API process → Kafka → worker
process → Redis → API): a write is the item's full state (fields left out are cleared,
the later of two entries of one id in a batch wins), category and price changes move
the item between filters, a category is one a ``category=`` filter can name, and a
delete hides an item without resetting its counts, which serve it again once re-listed."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from core.settings import Settings
from tests.integration.conftest import api_process
from tests.polling import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.e2e, pytest.mark.broker]


def served(client: httpx.Client, url: str) -> dict[str, dict[str, Any]]:
    resp = client.get(url)
    assert resp.status_code == 200, resp.text
    return {i["item_id"]: i for i in resp.json()["items"]}


def test_a_write_is_the_full_state_and_a_delete_keeps_the_counts(
        settings: Settings, start_worker: Callable[..., Any], tmp_path: Any) -> None:
    start_worker()
    with api_process(settings, tmp_path) as (client, _):
        full = {"name": "Trail shoe", "price": 80.0, "currency": "EUR",
                "category": "shoes.trail", "properties": {"size": 42}}
        items = [{"item_id": f"s{i}", **full} for i in range(4)]
        # the same id twice in one batch: the later entry wins
        items.append({"item_id": "s0", "name": "Road shoe", "price": 60.0})
        assert client.post("/v1/items", json={"items": items}).status_code == 202
        events = [{"type": "view", "user_id": f"u{u}", "item_id": "s1"} for u in range(3)]
        assert client.post("/v1/events", json={"events": events}).status_code == 202
        wait_for(lambda: "s1" in served(client, "/v1/popular?n=10")
                 and served(client, "/v1/popular?n=10")["s1"]["reason"] == "popular", 10,
                 "s1 popular")
        s0 = client.get("/v1/admin/items/s0").json()
        assert (s0["name"], s0["price"], s0["category"], s0["currency"]) == (
            "Road shoe", 60.0, None, None)

        # a write of one field clears the others, in every answer and filter
        assert client.put("/v1/items/s1", json={"price": 20.0}).status_code == 202
        wait_for(lambda: served(client, "/v1/popular?n=10")["s1"]["price"] == 20.0, 2,
                 "new price served")
        item = served(client, "/v1/popular?n=10")["s1"]
        assert (item["name"], item["category"], item["currency"], item["in_stock"]) == (
            None, None, None, True)
        assert "s1" not in served(client, "/v1/popular?n=10&category=shoes")
        assert "s1" not in served(client, "/v1/popular?n=10&price_min=80&price_max=80")
        assert "s1" in served(client, "/v1/popular?n=10&price_min=20&price_max=20")
        assert client.get("/v1/admin/items/s1").json()["properties"] == {}

        # deleted: never served, counts kept; listed again: served with them
        stats = client.get("/v1/admin/items/s1/stats").json()
        assert stats["views"] == 3
        assert client.delete("/v1/items/s1").status_code == 202
        wait_for(lambda: "s1" not in served(client, "/v1/popular?n=10"), 2, "s1 deleted")
        assert "s1" not in served(client, "/v1/trending?n=10")
        assert client.get("/v1/admin/items/s1/stats").json() == stats
        assert client.put("/v1/items/s1", json=full).status_code == 202
        wait_for(lambda: "s1" in served(client, "/v1/popular?n=10&category=shoes"), 2,
                 "s1 listed again")
        again = served(client, "/v1/popular?n=10")["s1"]
        assert (again["reason"], again["name"], again["price"]) == ("popular", "Trail shoe",
                                                                    80.0)
        assert client.get("/v1/admin/items/s1/stats").json() == stats


def test_every_stored_category_is_one_a_filter_can_select(
        settings: Settings, start_worker: Callable[..., Any], tmp_path: Any) -> None:
    start_worker()
    with api_process(settings, tmp_path) as (client, _):
        assert client.put("/v1/items/t1", json={"name": "Boot", "category": " boots "}
                          ).status_code == 202
        assert client.put("/v1/items/t2", json={"name": "Sock", "category": "  "}
                          ).status_code == 202
        wait_for(lambda: "t1" in served(client, "/v1/popular?n=10&category=boots"), 5,
                 "a trimmed category selectable")
        assert served(client, "/v1/popular?n=10&category=boots")["t1"]["category"] == "boots"
        assert client.get("/v1/admin/items/t2").json()["category"] is None

        # a comma is accepted as API.md's catalog promises (a filter cannot name it)
        assert client.put("/v1/items/t3", json={"name": "Lace", "category": "Home, Garden"}
                          ).status_code == 202
        wait_for(lambda: client.get("/v1/admin/items/t3").json().get("category")
                 == "Home, Garden", 5, "a category with a comma stored as sent")
