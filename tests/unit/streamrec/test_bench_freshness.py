"""``streamrec bench freshness``'s stock probe leaves the shop's catalog as it found it:
it once PUT ``{"name": "probe sku-8", "in_stock": false}`` and then ``in_stock: true``,
and a PUT is an item's full state, so each probed item of a running shop lost its name,
price and category for good. Checked against an in-memory stand-in of the API's catalog
routes (httpx's MockTransport; no Kafka or Redis involved)."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

import streamrec.bench.freshness as freshness

BEAR = {"name": "Lunar Plush Bear", "price": 49.16, "currency": "EUR", "category": "toys",
        "properties": {"size": "L"}}


class FakeShop:
    """The routes the probe uses: lists of in-stock items, the admin catalog read, PUT."""

    def __init__(self) -> None:
        self.catalog: dict[str, dict[str, Any]] = {"sku-1": {**BEAR, "in_stock": True},
                                                   "sku-2": {"name": "Mug", "in_stock": True}}
        self.puts: list[tuple[str, dict[str, Any]]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if request.method == "PUT":
            item = path.rsplit("/", 1)[1]
            body = json.loads(request.content)
            self.puts.append((item, body))
            self.catalog[item] = body  # a PUT replaces the item's whole state
            return httpx.Response(202, json={"accepted": 1})
        if path.startswith("/v1/admin/items/"):
            item = path.rsplit("/", 1)[1]
            entry = self.catalog.get(item)
            if entry is None:
                return httpx.Response(200, json={"item_id": item, "known": False})
            return httpx.Response(200, json={"item_id": item, "known": True, "deleted": False,
                                             **{k: None for k in freshness.CATALOG_FIELDS},
                                             **entry})
        # every list: an id the catalog never saw first, then the in-stock items
        listed = ["unknown-9"] + [i for i, e in self.catalog.items() if e.get("in_stock")]
        return httpx.Response(200, json={"items": [{"item_id": i} for i in listed]})


def _client(shop: FakeShop) -> httpx.Client:
    return httpx.Client(base_url="http://shop", transport=httpx.MockTransport(shop))


def test_a_probed_item_gets_its_catalog_entry_back() -> None:
    shop = FakeShop()
    with _client(shop) as client:
        samples = freshness.stock_freshness(client, users=["u1"], read_key="", admin_key="",
                                            timeout_s=2.0, rounds=1)
    assert len(samples) == 1 and samples[0] is not None
    assert shop.puts[0] == ("sku-1", {**BEAR, "in_stock": False})  # an id never sent: skipped
    assert shop.catalog["sku-1"] == {**BEAR, "in_stock": True}


def test_an_interrupted_probe_still_puts_the_item_back(monkeypatch: pytest.MonkeyPatch) -> None:
    shop = FakeShop()
    before = json.loads(json.dumps(shop.catalog))

    def interrupted(_predicate: Any, _timeout_s: float) -> float:
        raise KeyboardInterrupt

    monkeypatch.setattr(freshness, "_wait", interrupted)
    with _client(shop) as client, pytest.raises(KeyboardInterrupt):
        freshness.stock_freshness(client, users=["u1"], read_key="", admin_key="",
                                  timeout_s=2.0, rounds=1)
    assert shop.puts and shop.catalog == before  # taken out of stock, then put back as it was


def test_stock_rounds_take_the_users_in_turn() -> None:
    """``--users 2 --stock-rounds 5`` is five samples (``users[:rounds]`` gave two)."""
    shop = FakeShop()
    with _client(shop) as client:
        samples = freshness.stock_freshness(client, users=["u1", "u2"], read_key="",
                                            admin_key="", timeout_s=2.0, rounds=5)
    assert len(samples) == 5
