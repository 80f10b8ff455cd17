"""Stock counts through the running system (API process → Kafka → worker process →
Redis → API): a catalog write that says ``"stock": 0`` takes the item out of every list
within a second, a positive count lists it again, a negative one is a clear 422."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from core.settings import Settings
from tests.integration.conftest import api_process
from tests.polling import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.e2e, pytest.mark.broker]


def ids(client: httpx.Client, url: str) -> list[str]:
    resp = client.get(url)
    assert resp.status_code == 200, resp.text
    return [i["item_id"] for i in resp.json()["items"]]


def test_stock_zero_takes_an_item_out_of_every_list(
        settings: Settings, start_worker: Callable[..., Any], tmp_path: Any) -> None:
    start_worker()
    with api_process(settings, tmp_path) as (client, _):
        items = [{"item_id": f"k{i}", "name": f"Kettle {i}", "price": 20.0 + i,
                  "category": "kitchen.kettles", "stock": 5} for i in range(8)]
        assert client.post("/v1/items", json={"items": items}).status_code == 202
        events = [{"type": "view", "user_id": f"u{u}", "item_id": f"k{(u + k) % 8}"}
                  for u in range(12) for k in range(3)]
        assert client.post("/v1/events", json={"events": events}).status_code == 202
        lists = ["/v1/popular?n=8", "/v1/trending?n=8", "/v1/users/u1/recommendations?n=8",
                 "/v1/users/u1/recommendations?n=8&context=cart",
                 "/v1/users/newcomer/recommendations?n=8&category=kitchen",
                 "/v1/items/k2/similar?n=8"]
        wait_for(lambda: "k1" in ids(client, lists[0]), 10, "k1 popular")
        assert all("k1" in ids(client, url) for url in lists if "k1" not in url)

        # a feed that only says the count is gone (the other fields stay the full state)
        assert client.put("/v1/items/k1", json={"name": "Kettle 1", "stock": 0}
                          ).status_code == 202
        wait_for(lambda: all("k1" not in ids(client, url) for url in lists), 1.5,
                 "stock 0 gone from every list")
        # a count contradicts in_stock true: not for sale either
        assert client.post("/v1/items", json={"items": [
            {"item_id": "k3", "in_stock": True, "stock": 0}]}).status_code == 202
        wait_for(lambda: all("k3" not in ids(client, url) for url in lists), 1.5,
                 "stock 0 with in_stock true gone")
        assert client.get("/v1/admin/items/k1").json()["in_stock"] is False

        # restocked: served again
        assert client.put("/v1/items/k1", json={"name": "Kettle 1", "stock": 2}
                          ).status_code == 202
        wait_for(lambda: "k1" in ids(client, lists[0]), 1.5, "restocked k1 served")

        for bad in (-1, 1.5, True, "many"):
            resp = client.put("/v1/items/k2", json={"stock": bad})
            assert resp.status_code == 422, (bad, resp.text)
            body = resp.json()
            assert body["error"]["code"] == "validation_error"
            assert body["detail"][0]["loc"] == ["body", "stock"]
        assert "k2" in ids(client, lists[0])  # a rejected write changed nothing
