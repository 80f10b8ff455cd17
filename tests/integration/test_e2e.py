"""End to end on real servers: API process → Kafka → worker process → Redis → API.

Everything goes through the public HTTP contract; only `streamrec train`'s function is
called directly (the same function the CLI runs), and the stored lists are read from
Redis once to see which code wrote them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import orjson
import pytest
import redis

from core.redis_keys import RedisKeys
from core.settings import Settings
from stream.retrain import train_and_publish
from tests.integration.conftest import api_process
from tests.polling import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.e2e, pytest.mark.broker]

TRACK, READ, ADMIN = "track-key-01234567", "read-key-012345678", "admin-key-01234567"


@pytest.fixture
def e2e(settings: Settings, start_worker: Callable[..., Any], tmp_path: Any
        ) -> Iterator[tuple[httpx.Client, Settings]]:
    """A worker process and an API process (with keys) on the session's servers."""
    start_worker()
    with api_process(settings, tmp_path, tracking_keys=TRACK, read_keys=READ,
                     admin_keys=ADMIN) as running:
        yield running


def ids(resp: httpx.Response) -> list[str]:
    assert resp.status_code == 200, resp.text
    body = resp.json()
    items = [i["item_id"] for i in body["items"]]
    assert len(items) == len(set(items)), "duplicates in a list"
    scores = [i["score"] for i in body["items"]]
    assert scores == sorted(scores, reverse=True), "not ordered by descending score"
    return items


def test_events_in_lists_out(e2e: tuple[httpx.Client, Settings]) -> None:
    client, settings = e2e
    h_track, h_read, h_admin = ({"X-API-Key": k} for k in (TRACK, READ, ADMIN))

    # Catalog: 30 items in 3 categories, all in stock.
    items = [{"item_id": f"sku-{i}", "name": f"Item {i}", "price": 1.0 + i,
              "category": f"c{i % 3}", "in_stock": True} for i in range(30)]
    assert client.post("/v1/items", json={"items": items}, headers=h_admin).status_code == 202

    # Shoppers with a taste for one category each.
    events = []
    for u in range(30):
        for k in range(6):
            events.append({"type": "view", "user_id": f"u{u}",
                           "item_id": f"sku-{(u % 3) + 3 * ((u + k) % 10)}"})
    for start in range(0, len(events), 100):
        resp = client.post("/v1/events", json={"events": events[start:start + 100]},
                           headers=h_track)
        assert resp.status_code == 202 and resp.json()["accepted"] == len(events[start:start + 100])
    popular_url = "/v1/popular?n=30"
    wait_for(lambda: len(ids(client.get(popular_url, headers=h_read))) == 30, 10)

    # Before any model: a shopper gets a session list from co-occurrence.
    body = client.get("/v1/users/u1/recommendations?n=5", headers=h_read).json()
    assert body["source"] in {"session", "popular"} and len(body["items"]) == 5

    result = train_and_publish(settings, wait_live_s=20)
    assert result.live
    body = client.get("/v1/users/u1/recommendations?n=10", headers=h_read).json()
    assert body["source"] == "personalized" and body["model_version"] == result.version
    # With no new event, the worker's sweep soon replaces the retrain's plain lists of
    # its recently active shoppers by blends on the new model (items carry their source).
    rc = redis.Redis.from_url(settings.redis_url)

    def blended(user: str) -> bool:
        stored = orjson.loads(rc.get(RedisKeys().user_recs(user)) or b"{}")
        return stored.get("v") == result.version and all(
            len(item) == 3 for item in stored.get("items", [[]]))

    wait_for(lambda: all(blended(f"u{u}") for u in range(30)), 10)
    rc.close()

    # A new event changes the shopper's list within 2 s.
    before = ids(client.get("/v1/users/u1/recommendations?n=10", headers=h_read))
    assert client.post("/v1/events", headers=h_track, json={
        "type": "purchase", "user_id": "u1", "item_id": before[0]}).status_code == 202
    wait_for(lambda: ids(client.get("/v1/users/u1/recommendations?n=10",
                                    headers=h_read)) != before, 2.0, "list changed")
    # ... and the purchased item never comes back for that shopper.
    assert before[0] not in ids(client.get("/v1/users/u1/recommendations?n=100",
                                           headers=h_read))

    # Out of stock: gone from every list within 2 s; deleted: never again.
    target = ids(client.get(popular_url, headers=h_read))[0]
    assert client.put(f"/v1/items/{target}", headers=h_admin,
                      json={"name": "x", "in_stock": False}).status_code == 202
    lists = [popular_url, "/v1/trending?n=30", "/v1/users/u2/recommendations?n=30",
             "/v1/users/nobody/recommendations?n=30", "/v1/items/sku-5/similar?n=30"]
    wait_for(lambda: all(target not in ids(client.get(u, headers=h_read)) for u in lists),
             2.0, "out-of-stock item gone")
    gone = ids(client.get(popular_url, headers=h_read))[0]
    assert client.delete(f"/v1/items/{gone}", headers=h_admin).status_code == 202
    wait_for(lambda: all(gone not in ids(client.get(u, headers=h_read)) for u in lists),
             2.0, "deleted item gone")
    _relisted_only_by_the_catalog(client, next(i for i in items if i["item_id"] == gone), lists)

    # Names and prices are resolved; unknown users and items get a non-personal list.
    item = client.get("/v1/users/u4/recommendations?n=1", headers=h_read).json()["items"][0]
    assert item["name"].startswith("Item ") and item["price"] > 0 and item["in_stock"]
    assert client.get("/v1/items/no-such-item/similar", headers=h_read).json()["source"] in {
        "popular", "trending", "fallback"}


def _relisted_only_by_the_catalog(client: httpx.Client, item: dict[str, Any],
                                  lists: list[str]) -> None:
    """A deleted item: its events keep it out; an upsert of it (README's catalog row)
    lists it anew."""
    h_track, h_read, h_admin = ({"X-API-Key": k} for k in (TRACK, READ, ADMIN))
    gone = item["item_id"]

    def views() -> int:
        return int(client.get(f"/v1/admin/items/{gone}/stats", headers=h_admin).json()["views"])
    seen = views()
    events = [{"type": "view", "user_id": f"r{u}", "item_id": gone} for u in range(5)]
    assert client.post("/v1/events", json={"events": events}, headers=h_track).status_code == 202
    wait_for(lambda: views() == seen + 5, 5.0, "views of the deleted item applied")
    assert all(gone not in ids(client.get(u, headers=h_read)) for u in lists)
    assert client.put(f"/v1/items/{gone}", headers=h_admin, json=item).status_code == 202
    wait_for(lambda: gone in ids(client.get(lists[0], headers=h_read)), 2.0,
             "re-listed item served")


def test_identify_carries_anonymous_history(e2e: tuple[httpx.Client, Settings]) -> None:
    client, _ = e2e
    h_track, h_read = {"X-API-Key": TRACK}, {"X-API-Key": READ}
    anon = [{"type": "view", "anonymous_id": "anon-1", "item_id": f"a{i}"} for i in range(3)]
    anon.append({"type": "purchase", "anonymous_id": "anon-1", "item_id": "a1"})
    others = [{"type": "view", "user_id": f"x{u}", "item_id": f"a{(u + k) % 6}"}
              for u in range(10) for k in range(3)]
    assert client.post("/v1/events", json={"events": anon + others},
                       headers=h_track).status_code == 202
    assert client.post("/v1/identify", json={"anonymous_id": "anon-1", "user_id": "known-1"},
                       headers=h_track).status_code == 202
    # The anonymous purchase now counts for the user: never recommended to them.
    def user_list_without_a1() -> bool:
        resp = client.get("/v1/users/known-1/recommendations?n=20", headers=h_read)
        body = resp.json()
        return body["source"] == "session" and "a1" not in ids(resp)
    wait_for(user_list_without_a1, 5)


def test_bad_input_gets_clear_4xx(e2e: tuple[httpx.Client, Settings]) -> None:
    client, _ = e2e
    h_track, h_read = {"X-API-Key": TRACK}, {"X-API-Key": READ}
    resp = client.post("/v1/events", headers=h_track, json={"events": [
        {"type": "view", "user_id": "u", "item_id": "ok"},
        {"type": "view", "user_id": "u"}]})
    assert resp.status_code == 422
    body = resp.json()
    assert body["error"]["code"] and "item_id" in str(body["detail"])
    assert client.post("/v1/events", headers=h_track, content=b"{nope").status_code == 422
    assert client.get("/v1/popular?n=0", headers=h_read).status_code == 422
    assert client.get("/v1/popular?n=101", headers=h_read).status_code == 422
    assert client.get("/v1/popular", headers={"X-API-Key": "wrong"}).status_code == 401
    assert client.get("/v1/popular").status_code == 401
    assert client.get("/v1/popular", headers=h_track).status_code == 403
    big = {"events": [{"type": "view", "user_id": "u" * 256, "item_id": "i" * 256}] * 3000}
    assert client.post("/v1/events", headers=h_track, json=big).status_code == 413
