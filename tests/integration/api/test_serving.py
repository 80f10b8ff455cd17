"""Serving against a real Redis filled by the worker's own write path (the event
processor): page contexts, buy-again, rate limits, attribution, degradation, OpenAPI."""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest
import redis
import redis.asyncio as aioredis

from api.errors import REDIS_RETRY_AFTER_S
from core.net import free_port
from core.redis_keys import RedisKeys
from core.settings import Settings
from schemas import RecommendationList, TopicEvent
from stream.history_store import DictStore
from stream.processor import EventProcessor, ProcessorConfig
from stream.redis_writer import RedisWriter
from tests.integration.api.app_client import running

pytestmark = pytest.mark.integration

K = RedisKeys()
READ, READ2 = "read-1-0123456789ab", "read-2-0123456789ab"
TRACK, ADMIN = "track-1-0123456789a", "admin-1-0123456789a"
_ids = itertools.count()


def ev(etype: str, user: str, item: str | None = None, **kw: Any) -> TopicEvent:
    i = next(_ids)
    return TopicEvent(event_id=f"s{i}", type=etype, user_id=user, item_id=item,
                      ts=1_700_000_000 + i, received_at=1_700_000_000 + i, **kw)


async def feed(settings: Settings, events: list[TopicEvent]) -> None:
    """Apply events exactly as the worker does (same processor, same Redis writer)."""
    client = aioredis.Redis.from_url(settings.redis_url)
    proc = EventProcessor(RedisWriter(client, K, dedupe_ttl_s=3600), K, ProcessorConfig(),
                          lambda: None)
    await proc.process([(e, 0) for e in events], DictStore())
    await client.aclose()


@pytest.fixture
def r(settings: Settings) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(settings.redis_url, decode_responses=True)
    yield client
    client.close()


async def get(client: httpx.AsyncClient, url: str, key: str | None = None) -> dict[str, Any]:
    resp = await client.get(url, headers={"X-API-Key": key} if key else {})
    assert resp.status_code == 200, resp.text
    body = RecommendationList.model_validate(resp.json())
    ids = [i.item_id for i in body.items]
    assert len(ids) == len(set(ids))
    scores = [i.score for i in body.items]
    assert scores == sorted(scores, reverse=True)
    assert body.recommendation_id.startswith(f"{body.context}.")
    return resp.json()  # type: ignore[no-any-return]


def ids(body: dict[str, Any]) -> list[str]:
    return [i["item_id"] for i in body["items"]]


async def test_cart_context_serves_complements(settings: Settings) -> None:
    events = []
    for u in range(6):  # phone buyers also cart a case and a charger
        events += [ev("add_to_cart", f"c{u}", "phone"), ev("add_to_cart", f"c{u}", "case"),
                   ev("purchase", f"c{u}", "charger")]
    for u in range(6):  # popular items nobody carts with a phone
        events += [ev("purchase", f"p{u}", "tv"), ev("view", f"p{u}", "sofa")]
    events += [ev("add_to_cart", "me", "phone"), ev("view", "me", "sofa")]
    await feed(settings, events)
    async with running(settings, wait_ready=False) as client:
        body = await get(client, "/v1/users/me/recommendations?context=cart&n=4")
        assert body["context"] == "cart" and body["source"] == "similar"
        assert ids(body)[:2] == ["case", "charger"] or ids(body)[:2] == ["charger", "case"]
        assert {i["reason"] for i in body["items"][:2]} == {"complement"}
        assert "phone" not in ids(body), "cart items are never recommended in the cart"
        assert body["recommendation_id"].startswith("cart.complement.")
        # item_id joins the cart: a visitor with an empty cart who just added a phone
        body = await get(client, "/v1/users/new/recommendations?context=cart&item_id=phone")
        assert ids(body)[:2] in (["case", "charger"], ["charger", "case"])
        # removed from the cart: no more complements of it
        await feed(settings, [ev("remove_from_cart", "me", "phone")])
        body = await get(client, "/v1/users/me/recommendations?context=cart&n=4")
        assert body["items"][0]["reason"] != "complement"


async def test_checkout_buys_again_consumables_only(settings: Settings) -> None:
    events = []
    for u in range(8):  # coffee is bought again and again; a tv once
        events += [ev("purchase", f"b{u}", "coffee"), ev("purchase", f"b{u}", "tv"),
                   ev("purchase", f"b{u}", "coffee"), ev("purchase", f"b{u}", "filters")]
    events += [ev("purchase", "me", "coffee"), ev("purchase", "me", "tv"),
               ev("add_to_cart", "me", "filters")]
    await feed(settings, events)
    # Off by default (API.md: purchased items never appear): checkout shows no purchase.
    async with running(settings, wait_ready=False) as client:
        body = await get(client, "/v1/users/me/recommendations?context=checkout&n=5")
        assert not {"coffee", "tv"} & set(ids(body))
    settings = settings.model_copy(update={"buy_again": True})
    async with running(settings, wait_ready=False) as client:
        body = await get(client, "/v1/users/me/recommendations?context=checkout&n=5")
        assert body["items"][0] == {**body["items"][0], "item_id": "coffee",
                                    "reason": "buy_again"}
        assert body["source"] == "personalized"
        traced = await get(client, "/v1/users/me/recommendations?context=checkout&n=5"
                                   "&explain=true")
        again = [s for s in traced["trace"]["sources"] if s["name"] == "buy_again"]
        assert again and again[0]["age_s"] is not None  # as old as the newest purchase
        assert "tv" not in ids(body), "one-off purchases are never offered again"
        assert "filters" not in ids(body), "already in the cart"
        # every other context still never shows purchases
        for url in ("/v1/users/me/recommendations?n=20",
                    "/v1/users/me/recommendations?context=cart&n=20",
                    "/v1/users/me/recommendations?context=product&item_id=filters&n=20",
                    "/v1/items/filters/similar?user_id=me&n=20"):
            assert not {"coffee", "tv"} & set(ids(await get(client, url))), url


async def test_a_promoted_consumable_is_still_bought_again_at_checkout(
        settings: Settings, r: redis.Redis) -> None:
    """A promotion of an item the checkout list re-offers (buy again) never removes it:
    the promotion rejected it as purchased and so hid it from the buy-again link too.
    It stays ``buy_again``: a promotion never serves a purchased item (API.md)."""
    events = []
    for u in range(8):  # coffee is bought again and again
        events += [ev("purchase", f"b{u}", "coffee"), ev("purchase", f"b{u}", "coffee"),
                   ev("purchase", f"b{u}", "tv")]
    events += [ev("purchase", "me", "coffee"), ev("purchase", "me", "tv")]
    await feed(settings, events)
    r.hset(K.item_meta("coffee"), mapping={"category": "food.coffee", "price": "7.5",
                                           "in_stock": "1"})
    settings = settings.model_copy(update={"buy_again": True, "admin_keys": ADMIN,
                                           "read_keys": READ})
    promo = {"item_ids": ["coffee", "tv"], "share": 0.5, "contexts": ["checkout"]}
    url = "/v1/users/me/recommendations?context=checkout&n=4&category=food"
    async with running(settings, wait_ready=False) as client:
        plain = await get(client, url, READ)
        assert ids(plain) == ["coffee"] and plain["items"][0]["reason"] == "buy_again"
        resp = await client.put("/v1/admin/promotions/beans", json=promo,
                                headers={"X-API-Key": ADMIN})
        assert resp.status_code == 200, resp.text
        for extra in ("", "&explain=true", "&n=+4"):  # fast path, trace, the routes
            body = await get(client, url + extra, READ)
            assert ids(body) == ["coffee"], (extra, body)
            assert body["items"][0]["reason"] == "buy_again"
            if extra == "&explain=true":
                dropped = {d["item_id"]: d["why"] for d in body["trace"]["dropped"]}
                assert "coffee" not in dropped and dropped.get("tv") == "purchased"
        body = await get(client, "/v1/users/me/recommendations?context=checkout&n=4", READ)
        assert ids(body)[0] == "coffee" and "tv" not in ids(body)


async def test_product_context_is_personalised(settings: Settings, r: redis.Redis) -> None:
    r.set(K.item_similar("x"), orjson.dumps({"v": "v1", "items": [
        ["a", 0.9], ["b", 0.8], ["c", 0.7], ["d", 0.6]]}))
    r.set(K.user_recs("fan-of-c"), orjson.dumps({"v": "v1", "items": [
        ["c", 0.9], ["z", 0.5]]}))
    r.zadd(K.popular, {"p": 10})
    async with running(settings, wait_ready=False) as client:
        anon = await get(client, "/v1/users/nobody/recommendations?context=product&item_id=x")
        assert ids(anon) == ["a", "b", "c", "d", "p"]
        fan = await get(client, "/v1/users/fan-of-c/recommendations?context=product&item_id=x")
        assert ids(fan)[0] == "c" and fan["items"][0]["reason"] == "similar"
        assert ids(fan)[1:4] == ["a", "b", "d"] and "x" not in ids(fan)
        assert fan["context"] == "product"
        short = await get(client, "/v1/users/fan-of-c/recommendations?context=product"
                                  "&item_id=x&n=2")
        assert ids(short) == ["c", "a"]
        # product without item_id is a home list
        home = await get(client, "/v1/users/fan-of-c/recommendations?context=product")
        assert home["context"] == "home" and ids(home)[0] == "c"


async def test_rate_limits_per_key_with_retry_after(settings: Settings) -> None:
    slow = settings.model_copy(update={
        "read_keys": f"{READ},{READ2}", "tracking_keys": TRACK, "admin_keys": ADMIN,
        "rate_limit_read_per_s": 0.01, "rate_limit_tracking_per_s": 0.01,
        "rate_limit_admin_per_s": 0.01})
    async with running(slow, wait_ready=False) as client:
        await get(client, "/v1/popular", READ)
        limited = await client.get("/v1/users/u1/recommendations", headers={"X-API-Key": READ})
        assert limited.status_code == 429
        assert limited.json()["error"]["code"] == "rate_limited"
        assert 1 <= int(limited.headers["Retry-After"]) <= 100
        await get(client, "/v1/trending", READ2)  # another key has its own budget
        # tracking writes are charged per event once valid (test_tracking_limits.py):
        # invalid ones spend nothing
        for _ in range(2):
            bad = await client.post("/v1/identify", headers={"X-API-Key": TRACK}, json={})
            assert bad.status_code == 422
        # admin keys: limited before the body is even read
        assert (await client.get("/v1/admin/attribution",
                                 headers={"X-API-Key": ADMIN})).status_code == 200
        assert (await client.get("/v1/admin/attribution",
                                 headers={"X-API-Key": ADMIN})).status_code == 429
        # wrong keys are refused before any limit is spent
        assert (await client.get("/v1/popular", headers={"X-API-Key": "nope"})).status_code \
            == 401


async def test_rate_limit_is_off_when_redis_is_down(settings: Settings) -> None:
    gone = settings.model_copy(update={
        "redis_url": f"redis://127.0.0.1:{free_port()}/0", "read_keys": READ,
        "admin_keys": ADMIN, "rate_limit_read_per_s": 0.01})
    async with running(gone, wait_ready=False) as client:
        for url in ("/v1/popular", "/v1/users/u1/recommendations?context=cart",
                    "/v1/users/u1/recommendations?context=checkout", "/v1/popular"):
            body = await get(client, url, READ)
            assert body["source"] == "fallback"
        report = await client.get("/v1/admin/attribution", headers={"X-API-Key": ADMIN})
        assert report.status_code == 503 and report.headers["Retry-After"]


async def test_admin_answers_without_redis_all_say_the_same_retry_after(
        settings: Settings) -> None:
    # Each read or write without a fallback once chose its own Retry-After (the report
    # said 5 s, the others 2 s) and its own wording; one rule now: RedisUnavailable.
    gone = settings.model_copy(update={
        "redis_url": f"redis://127.0.0.1:{free_port()}/0", "admin_keys": ADMIN})
    calls = [("GET", "/v1/admin/attribution"), ("GET", "/v1/admin/items/sku-1/stats"),
             ("GET", "/v1/admin/items/sku-1"), ("GET", "/v1/admin/users/u1"),
             ("GET", "/v1/admin/promotions"), ("GET", "/v1/admin/experiments")]
    async with running(gone, wait_ready=False) as client:
        for method, url in calls:
            resp = await client.request(method, url, headers={"X-API-Key": ADMIN})
            assert (resp.status_code, resp.headers.get("Retry-After")) == (
                503, str(REDIS_RETRY_AFTER_S)), (url, resp.text)
            assert resp.json()["error"]["message"].startswith("Redis unavailable: "), url


async def test_attribution_report(settings: Settings) -> None:
    admin = settings.model_copy(update={"admin_keys": ADMIN, "read_keys": READ})
    await feed(settings, [ev("view", f"v{u}", "a") for u in range(3)])
    async with running(admin, wait_ready=False) as client:
        home = await get(client, "/v1/users/v9/recommendations", READ)
        cart = await get(client, "/v1/users/v9/recommendations?context=cart", READ)
        rid_home, rid_cart = home["recommendation_id"], cart["recommendation_id"]
        assert rid_home.split(".")[:2] == ["home", "popular"]
        events = [ev("impression", "v9", None, item_ids=["a"], recommendation_id=rid_home)
                  for _ in range(4)]
        events += [ev("click", "v9", "a", recommendation_id=rid_home),
                   ev("purchase", "v9", "a", recommendation_id=rid_home),
                   ev("impression", "v9", None, item_ids=["a"], recommendation_id=rid_cart),
                   ev("click", "v9", "a", recommendation_id="forged.id.here"),
                   # known context and origin, but not an id the API issued
                   ev("click", "v9", "a", recommendation_id="home.personalized.forged"),
                   ev("click", "v9", "a")]  # no list id: not attributed at all
        await feed(settings, events)
        await feed(settings, events[:3])  # redelivered: counted once
        resp = await client.get("/v1/admin/attribution", headers={"X-API-Key": ADMIN})
        assert resp.status_code == 200
        report = resp.json()
        by_context = {row["name"]: row for row in report["by_context"]}
        assert by_context["home"] == {
            "name": "home", "impressions": 4, "clicks": 1, "add_to_carts": 0, "purchases": 1,
            "ctr": 0.25, "conversion": 0.25, "click_conversion": 1.0}
        assert by_context["cart"]["impressions"] == 1 and by_context["cart"]["ctr"] == 0.0
        assert by_context["unattributed"]["clicks"] == 2
        by_origin = {row["name"]: row for row in report["by_origin"]}
        assert by_origin["popular"]["impressions"] == 5
        assert by_origin["unattributed"]["clicks"] == 2
        assert "personalized" not in by_origin
        assert (await client.get("/v1/admin/attribution",
                                 headers={"X-API-Key": READ})).status_code == 403


async def test_openapi_documents_contexts_limits_and_examples(settings: Settings) -> None:
    async with running(settings, wait_ready=False) as client:
        doc = (await client.get("/openapi.json")).json()
    paths = doc["paths"]
    user = paths["/v1/users/{user_id}/recommendations"]["get"]
    context = next(p for p in user["parameters"] if p["name"] == "context")
    assert "checkout" in context["description"] and context["schema"]["examples"]
    for path, method in (("/v1/users/{user_id}/recommendations", "get"),
                         ("/v1/events", "post"), ("/v1/items/{item_id}", "put")):
        op = paths[path][method]
        assert "429" in op["responses"] and "Retry-After" in op["responses"]["429"]["headers"]
        for code, response in op["responses"].items():
            if code.startswith("4"):
                assert response["content"]["application/json"]["example"]["error"]["code"]
    report = paths["/v1/admin/attribution"]["get"]
    assert report["responses"]["200"]["content"]["application/json"]["schema"]
    assert doc["components"]["schemas"]["AttributionReport"]["examples"]
    # OpenAPI requires unique operation ids (the HEAD of /healthz and /readyz repeated
    # their GET's, which code generators refuse)
    ids = [op["operationId"] for ops in paths.values() for op in ops.values()]
    assert len(ids) == len(set(ids)), sorted(i for i in ids if ids.count(i) > 1)


def test_rate_limit_state_never_holds_the_key(settings: Settings, r: redis.Redis) -> None:
    import asyncio

    # one request per 10 s: the bucket lives 10 s after the request. At 1/s it lived 1 s,
    # and a shutdown of the app slower than that (a loaded CI) left no key to check.
    limited = settings.model_copy(update={"read_keys": READ, "rate_limit_read_per_s": 0.1})

    async def run() -> None:
        async with running(limited, wait_ready=False) as client:
            await get(client, "/v1/popular", READ)

    asyncio.run(run())
    keys = [k for k in r.scan_iter(K.rate_limit("*", "*"))]
    assert len(keys) == 1 and READ not in keys[0]
    assert 0 < r.pttl(keys[0]) <= 10_001
    assert float(r.get(keys[0]) or 0) > time.time() - 5
