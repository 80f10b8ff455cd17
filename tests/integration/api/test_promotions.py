"""Promotions (API.md "Merchandising"): the admin routes on a real Redis, and promoted
items leading lists at their share, never where a request or serving rule excludes
them."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import redis

from core.limits import PROMOTION_SCAN_MAX, PROMOTIONS_MAX
from core.redis_client import sync_client
from core.redis_keys import RedisKeys
from core.settings import Settings
from tests.integration.api.app_client import assert_error, running

pytestmark = pytest.mark.integration


@pytest.fixture
def settings(either_redis: Settings) -> Settings:
    """On one Redis, then on a Redis Cluster (same keys and scripts)."""
    return either_redis

K = RedisKeys()
ADMIN, READ = "admin-k-0123456789ab", "read-k-0123456789abc"
A, R = {"X-API-Key": ADMIN}, {"X-API-Key": READ}


@pytest.fixture
def keyed(settings: Settings) -> Settings:
    return settings.model_copy(update={"admin_keys": ADMIN, "read_keys": READ})


@pytest.fixture
def r(settings: Settings) -> Iterator[redis.Redis]:
    client = sync_client(settings, decode_responses=True)
    # 30 popular items in stock, categories c0..c2, prices 0..29
    client.zadd(K.popular, {f"p{i}": 100 - i for i in range(30)})
    for i in range(30):
        client.hset(K.item_meta(f"p{i}"), mapping={"in_stock": "1", "category": f"c{i % 3}",
                                                   "price": repr(float(i)), "name": f"P{i}"})
    yield client
    client.close()


def iso(delta_s: float) -> str:
    return (datetime.now(UTC) + timedelta(seconds=delta_s)).isoformat()


async def listed(client: httpx.AsyncClient, url: str) -> list[tuple[str, str]]:
    resp = await client.get(url, headers=R)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    scores = [i["score"] for i in body["items"]]
    assert scores == sorted(scores, reverse=True)
    assert body["source"] != "promoted" and ".promoted." not in body["recommendation_id"]
    return [(i["item_id"], i["reason"]) for i in body["items"]]


async def test_admin_routes_store_list_read_and_delete(keyed: Settings, r: redis.Redis) -> None:
    body = {"item_ids": ["p20", "p21"], "share": 0.3, "contexts": ["home", "popular"],
            "starts_at": "2026-01-01T00:00:00Z", "ends_at": "2099-01-01T00:00:00"}
    async with running(keyed, wait_ready=False) as client:
        resp = await client.put("/v1/admin/promotions/xmas", json=body, headers=A)
        assert resp.status_code == 200, resp.text
        stored = resp.json()
        assert stored["promotion_id"] == "xmas" and stored["item_ids"] == ["p20", "p21"]
        assert stored["share"] == 0.3 and stored["contexts"] == ["home", "popular"]
        assert stored["ends_at"].startswith("2099-01-01T00:00:00") and stored["category"] is None
        put2 = await client.put("/v1/admin/promotions/beans", json={"category": "c1"}, headers=A)
        assert put2.status_code == 200 and put2.json()["share"] == 0.2
        listing = (await client.get("/v1/admin/promotions", headers=A)).json()
        assert [p["promotion_id"] for p in listing["promotions"]] == ["beans", "xmas"]
        assert (await client.get("/v1/admin/promotions/xmas", headers=A)).json() == stored
        deleted = await client.delete("/v1/admin/promotions/xmas", headers=A)
        assert deleted.status_code == 200 and deleted.json() == stored
        assert_error(await client.get("/v1/admin/promotions/xmas", headers=A), 404, "not_found")
        assert_error(await client.delete("/v1/admin/promotions/xmas", headers=A), 404)
        assert_error(await client.get("/v1/admin/promotions", headers=R), 403)
        assert_error(await client.put("/v1/admin/promotions/x", json=body), 401)


async def test_a_stored_promotion_can_be_sent_back_as_read(keyed: Settings) -> None:
    async with running(keyed, wait_ready=False) as client:
        stored = (await client.put("/v1/admin/promotions/p", json={"category": "c"},
                                   headers=A)).json()
        again = await client.put("/v1/admin/promotions/p", json={**stored, "share": 0.5},
                                 headers=A)
        assert again.status_code == 200, again.text
        assert again.json()["share"] == 0.5 and again.json()["category"] == "c"


@pytest.mark.parametrize("body", [
    {}, {"item_ids": ["a"], "category": "c"}, {"item_ids": []}, {"item_ids": [""]},
    {"category": " "}, {"item_ids": ["a"], "share": 0}, {"item_ids": ["a"], "share": 1.5},
    {"item_ids": ["a"], "share": -0.1}, {"item_ids": ["a"], "contexts": ["search"]},
    {"item_ids": ["a"], "contexts": []}, {"item_ids": ["a"], "starts_at": "tomorrow"},
    {"item_ids": ["a"], "starts_at": "2026-02-01T00:00:00Z", "ends_at": "2026-01-01T00:00:00Z"},
    # no starts_at = now: a window that already ended would never run
    {"item_ids": ["a"], "ends_at": "2026-01-01T00:00:00Z"},
    {"item_ids": ["a"] * 101}, {"item_ids": [f"i{n}" for n in range(101)]}, [], "x",
    # misspelt fields: not a promotion running in every context, or starting now
    {"item_ids": ["a"], "context": ["home"]}, {"item_ids": ["a"], "start_at": "2099-01-01"},
    # no item's category holds a control character (PUT /v1/items refuses them)
    {"category": "a\u0007b"}, {"category": "\u0000"}, {"category": "shoes\tbags"},
])
async def test_invalid_promotions_are_422(keyed: Settings, body: Any) -> None:
    async with running(keyed, wait_ready=False) as client:
        resp = await client.put("/v1/admin/promotions/p", json=body, headers=A)
        assert_error(resp, 422, "validation_error")
        assert_error(await client.put("/v1/admin/promotions/a%00b", json={"category": "c"},
                                      headers=A), 422)


async def test_the_number_of_promotions_is_bounded(keyed: Settings, r: redis.Redis) -> None:
    for i in range(PROMOTIONS_MAX):
        r.hset(K.promotions, f"x{i}", "{}")
    async with running(keyed, wait_ready=False) as client:
        resp = await client.put("/v1/admin/promotions/one-more", json={"category": "c"},
                                headers=A)
        assert_error(resp, 422)
        r.hdel(K.promotions, "x0")
        assert (await client.put("/v1/admin/promotions/one-more", json={"category": "c"},
                                 headers=A)).status_code == 200


async def test_promoted_items_lead_at_their_share_on_every_endpoint(
        keyed: Settings, r: redis.Redis) -> None:
    r.zadd(K.trending, {f"p{i}": 50 - i for i in range(30)})
    r.set(K.item_similar("p0"), '{"v": "v1", "items": [["p1", 0.9], ["p2", 0.8], ["p3", 0.7]]}')
    async with running(keyed, wait_ready=False) as client:
        await client.put("/v1/admin/promotions/a", headers=A,
                         json={"item_ids": ["p25", "p26", "p27"], "share": 0.2})
        for url in ("/v1/popular?n=10", "/v1/trending?n=10", "/v1/items/p0/similar?n=10",
                    "/v1/users/u1/recommendations?n=10",
                    "/v1/users/u1/recommendations?n=10&context=product&item_id=p0"):
            got = await listed(client, url)
            assert got[:2] == [("p25", "promoted"), ("p26", "promoted")], url
            assert len(got) == 10 and all(why != "promoted" for _, why in got[2:]), url
        assert (await listed(client, "/v1/popular?n=3"))[:1] == [("p25", "promoted")]  # ceil
        got = await listed(client, "/v1/popular?n=1")
        assert got == [("p25", "promoted")]


async def test_any_share_above_zero_leads_with_at_least_one_item(
        keyed: Settings, r: redis.Redis) -> None:
    """ceil(share × n) is 1 for the smallest share, not 0 (float residue aside)."""
    async with running(keyed, wait_ready=False) as client:
        resp = await client.put("/v1/admin/promotions/tiny", headers=A,
                                json={"item_ids": ["p25", "p26"], "share": 1e-12})
        assert resp.status_code == 200, resp.text
        for n in (1, 10, 100):
            got = await listed(client, f"/v1/popular?n={n}")
            assert got[0] == ("p25", "promoted"), n
            assert all(why != "promoted" for _, why in got[1:]), n


async def test_promotions_obey_every_rule_of_the_request(keyed: Settings, r: redis.Redis) -> None:
    r.sadd(K.unavailable, "p21")
    r.hset(K.item_meta("p21"), "in_stock", "0")
    r.zadd(K.user_bought("u1"), {"p22": 1})
    r.zadd(K.user_cart("u1"), {"p23": 1})
    promoted = ["p21", "p22", "p23", "p24", "p25", "p26", "p27", "p28"]
    async with running(keyed, wait_ready=False) as client:
        await client.put("/v1/admin/promotions/a", headers=A,
                         json={"item_ids": promoted, "share": 0.5})
        got = await listed(client, "/v1/users/u1/recommendations?n=4&context=cart&exclude=p24")
        assert got[:2] == [("p25", "promoted"), ("p26", "promoted")]
        got = await listed(client, "/v1/users/u1/recommendations?n=4&category=c0&price_max=27")
        # c0 items under 27 only: p21 is out of stock, p22 bought, p25/p26 other categories
        assert got[:2] == [("p24", "promoted"), ("p27", "promoted")]
        assert [i for i, _ in got[2:]] == ["p0", "p3"]
        got = await listed(client, "/v1/popular?n=4&max_per_category=1")  # nobody's cart
        assert got[:2] == [("p22", "promoted"), ("p23", "promoted")]
        assert [i for i, _ in got[2:]] == ["p0"]  # c1 and c2 are full
        body = (await client.get("/v1/popular?n=4&explain=true", headers=R)).json()
        assert [s["name"] for s in body["trace"]["sources"]] == ["promotion:a", "popular"]


async def test_promotions_run_only_in_their_contexts_and_window(
        keyed: Settings, r: redis.Redis) -> None:
    async with running(keyed, wait_ready=False) as client:
        await client.put("/v1/admin/promotions/home", headers=A, json={
            "item_ids": ["p29"], "share": 0.1, "contexts": ["home"]})
        await client.put("/v1/admin/promotions/later", headers=A, json={
            "item_ids": ["p28"], "share": 0.1, "starts_at": iso(3600)})
        await client.put("/v1/admin/promotions/over", headers=A, json={
            "item_ids": ["p27"], "share": 0.1, "starts_at": iso(-7200), "ends_at": iso(-3600)})
        assert (await listed(client, "/v1/users/u1/recommendations?n=5"))[0] == (
            "p29", "promoted")
        assert (await listed(client, "/v1/users/u1/recommendations?n=5&context=home&x=1"))[0] \
            == ("p29", "promoted")
        for url in ("/v1/popular?n=5", "/v1/users/u1/recommendations?n=5&context=cart"):
            assert all(why != "promoted" for _, why in await listed(client, url)), url
        await client.put("/v1/admin/promotions/home", headers=A, json={
            "item_ids": ["p29"], "share": 0.1, "contexts": ["popular"]})
        assert (await listed(client, "/v1/popular?n=5"))[0] == ("p29", "promoted")
        await client.delete("/v1/admin/promotions/home", headers=A)
        assert all(why != "promoted" for _, why in await listed(client, "/v1/popular?n=5"))


async def test_every_api_process_serves_an_admin_change_from_its_200_on(
        keyed: Settings, r: redis.Redis) -> None:
    """Two API processes (two apps, a copy of the promotions each): what one writes, the
    other serves from the next list on, on the fast path and the routes alike (a change
    used to wait for the other's copy to expire, up to a second)."""
    async def promoted(client: httpx.AsyncClient, url: str) -> list[str]:
        return [i for i, why in await listed(client, url) if why == "promoted"]

    home, popular = "/v1/users/u1/recommendations?n=10", "/v1/popular?n=10&category=c1"
    async with running(keyed, wait_ready=False) as one, \
            running(keyed, wait_ready=False) as other:
        for url in (home, popular):  # the other's copy is fresh: nothing promoted
            assert await promoted(other, url) == []
        await one.put("/v1/admin/promotions/a", headers=A,
                      json={"item_ids": ["p25", "p28"], "share": 0.1})
        assert await promoted(other, home) == ["p25"]
        assert await promoted(other, popular) == ["p25"]
        await one.put("/v1/admin/promotions/a", headers=A,
                      json={"item_ids": ["p25", "p28"], "share": 0.2})
        assert await promoted(other, home) == ["p25", "p28"]
        await one.put("/v1/admin/promotions/a", headers=A, json={
            "item_ids": ["p25", "p28"], "share": 0.2, "contexts": ["cart"]})
        assert await promoted(other, home) == []
        assert await promoted(other, home + "&context=cart") == ["p25", "p28"]
        await one.put("/v1/admin/promotions/a", headers=A, json={
            "item_ids": ["p25"], "starts_at": iso(3600)})
        assert await promoted(other, home + "&context=cart") == []
        await one.put("/v1/admin/promotions/a", headers=A, json={"item_ids": ["p25"]})
        assert await promoted(other, home) == ["p25"]
        # "explain=on" is the routes' to parse (the fast path takes true/false/1/0)
        assert await promoted(other, home + "&explain=on") == ["p25"]
        assert (await one.delete("/v1/admin/promotions/a", headers=A)).status_code == 200
        assert await promoted(other, home + "&explain=on") == []
        assert await promoted(other, home) == []


async def test_a_category_promotion_leads_with_its_most_popular_items(
        keyed: Settings, r: redis.Redis) -> None:
    r.hset(K.item_meta("p5"), "category", "c2.sub")
    async with running(keyed, wait_ready=False) as client:
        await client.put("/v1/admin/promotions/c2", headers=A,
                         json={"category": "c2", "share": 0.5})
        got = await listed(client, "/v1/users/u1/recommendations?n=6")
        assert got[:3] == [("p2", "promoted"), ("p5", "promoted"), ("p8", "promoted")]
        assert [i for i, _ in got[3:]] == ["p0", "p1", "p3"]  # p2 is not repeated
        got = await listed(client, "/v1/popular?n=4&category=c0")
        assert all(why != "promoted" for _, why in got) and len(got) == 4


async def test_a_promotion_never_takes_more_than_its_own_share(
        keyed: Settings, r: redis.Redis) -> None:
    """Slots a promotion cannot fill (its items out of stock) stay organic: the next
    promotion still leads with ceil(its share × n) items, not with the unused ones too."""
    r.sadd(K.unavailable, "p20", "p21")
    r.hset(K.item_meta("p20"), "in_stock", "0")
    r.hset(K.item_meta("p21"), "in_stock", "0")
    async with running(keyed, wait_ready=False) as client:
        await client.put("/v1/admin/promotions/a-sold-out", headers=A,
                         json={"item_ids": ["p20", "p21"], "share": 0.2})
        await client.put("/v1/admin/promotions/b", headers=A,
                         json={"item_ids": ["p25", "p26", "p27", "p28"], "share": 0.2})
        for url in ("/v1/popular?n=10", "/v1/users/u1/recommendations?n=10",
                    "/v1/popular?n=10&explain=true", "/v1/popular?n=10&price_min=1"):
            got = await listed(client, url)
            assert got[:2] == [("p25", "promoted"), ("p26", "promoted")], url
            assert len(got) == 10 and all(why != "promoted" for _, why in got[2:]), url



async def test_every_active_promotion_gets_its_slots_however_many_run(
        keyed: Settings, r: redis.Redis) -> None:
    """Eight small promotions at once: each leads with its item, and a category filter
    still finds the promotions of that category wherever they sort."""
    async with running(keyed, wait_ready=False) as client:
        for i in range(8):
            resp = await client.put(f"/v1/admin/promotions/m{i}", headers=A,
                                    json={"item_ids": [f"p{20 + i}"], "share": 0.1})
            assert resp.status_code == 200, resp.text
        got = await listed(client, "/v1/popular?n=10")
        assert got[:8] == [(f"p{20 + i}", "promoted") for i in range(8)]
        assert all(why != "promoted" for _, why in got[8:]) and len(got) == 10
        got = await listed(client, "/v1/users/u1/recommendations?n=10&category=c2")
        # c2: p20, p23, p26 (i % 3 == 2), promoted by m0, m3 and m6
        assert got[:3] == [("p20", "promoted"), ("p23", "promoted"), ("p26", "promoted")]
        assert [i for i, _ in got[3:]] == ["p2", "p5", "p8", "p11", "p14", "p17", "p29"]


async def test_promotion_bodies_are_strict_and_ids_may_contain_a_slash(
        keyed: Settings) -> None:
    async with running(keyed, wait_ready=False) as client:
        for bad, field in (({"item_ids": ["a"], "share": True}, "share"),
                           ({"item_ids": ["a"], "share": "0.5"}, "share"),
                           ({"item_ids": ["a"], "ends_at": 1893456000}, "ends_at")):
            r = await client.put("/v1/admin/promotions/p1", json=bad, headers=A)
            message = assert_error(r, 422)["error"]["message"]
            assert message.startswith(f"invalid PromotionBody: {field}:"), message
        r = await client.put("/v1/admin/promotions/a%2Fb", json={"item_ids": ["a"], "share": 1},
                             headers=A)
        assert r.status_code == 200, r.text
        got = await client.get("/v1/admin/promotions/a%2Fb", headers=A)
        assert got.json()["promotion_id"] == "a/b"
        assert (await client.delete("/v1/admin/promotions/a%2Fb", headers=A)).status_code == 200
        assert_error(await client.get("/v1/admin/promotions/a%2Fb", headers=A), 404)


async def test_a_category_promotion_finds_its_items_below_the_scan_budget(
        keyed: Settings, r: redis.Redis) -> None:
    """A category whose items all rank below the first PROMOTION_SCAN_MAX popular items
    still leads every list (its items are read from the category's item set, which the
    worker keeps beside the catalog), with or without a filter or a trace."""
    filler = PROMOTION_SCAN_MAX + 50
    r.zadd(K.popular, {f"f{i}": 50 - i / 1000 for i in range(filler)})
    r.zadd(K.popular, {"n0": 1.0, "n1": 0.9, "n2": 0.8, "n3": 0.7})
    for i in range(4):
        r.hset(K.item_meta(f"n{i}"), mapping={"in_stock": "1", "category": "niche.sub",
                                              "price": "5.0", "name": f"N{i}"})
        r.hset(K.item_categories, f"n{i}", "niche.sub")
        r.hset(K.item_prices, f"n{i}", "5.0")
        for prefix in ("niche", "niche.sub"):
            r.sadd(K.category_items(prefix), f"n{i}")
    r.set(K.columns_ready, "1")
    async with running(keyed, wait_ready=False) as client:
        await client.put("/v1/admin/promotions/niche", headers=A,
                         json={"category": "niche", "share": 0.2})
        for url in ("/v1/popular?n=10", "/v1/trending?n=10", "/v1/users/u1/recommendations?n=10",
                    "/v1/items/p0/similar?n=10", "/v1/popular?n=10&price_min=1",
                    "/v1/popular?n=10&explain=true", "/v1/popular?n=10&exclude=n0",
                    "/v1/popular?n=10&category=niche"):
            got = await listed(client, url)
            want = ["n1", "n2"] if "exclude=n0" in url else ["n0", "n1"]
            assert got[:2] == [(i, "promoted") for i in want], url
            assert all(why != "promoted" for _, why in got[2:]), url
