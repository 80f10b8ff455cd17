"""What browsers need of the API (sdk/js/README.md, "What the API provides"), on a real
broker and Redis: the tracking key as ``?key=`` or a body ``"key"`` (tracking keys only,
tracking routes only), JSON sent as ``text/plain`` (``sendBeacon``), and CORS for the
configured origins with preflight and ``Retry-After`` exposed."""

from __future__ import annotations

import asyncio

import orjson
import pytest

from core.settings import Settings
from tests.integration.api.app_client import assert_error, envelopes, running

pytestmark = [pytest.mark.integration, pytest.mark.broker]

TRACK, READ, ADMIN = "beacon-track-0123456", "beacon-read-01234567", "beacon-admin-0123456"
SHOP = "http://shop.example:8080"
BEACON = {"Content-Type": "text/plain;charset=UTF-8"}


@pytest.fixture
def keyed(settings: Settings) -> Settings:
    """Keys of every role, CORS for one shop, the test's topics."""
    from core.kafka_tools import create_topics

    s = settings.model_copy(update={"tracking_keys": TRACK, "read_keys": READ,
                                    "admin_keys": ADMIN, "cors_origins": SHOP})
    create_topics(s)
    return s


async def test_tracking_key_in_the_query_or_the_body(keyed: Settings) -> None:
    event = {"event_id": "beacon-1", "type": "view", "anonymous_id": "a-1", "item_id": "x"}
    async with running(keyed) as client:
        # A beacon: key in the URL, JSON as text/plain, no header.
        r = await client.post(f"/v1/events?key={TRACK}", content=orjson.dumps(
            {"events": [event]}), headers=BEACON)
        assert r.status_code == 202, r.text
        assert r.json()["event_ids"] == ["beacon-1"]
        # The key as a body field, next to one event or a batch; it is not part of them.
        single = {**event, "event_id": "beacon-2", "key": TRACK}
        r = await client.post("/v1/events", content=orjson.dumps(single), headers=BEACON)
        assert r.status_code == 202, r.text
        batch = {"events": [{**event, "event_id": "beacon-3"}], "key": TRACK}
        assert (await client.post("/v1/events", json=batch)).status_code == 202
        r = await client.post("/v1/identify", json={"anonymous_id": "a-1", "user_id": "u-1",
                                                    "key": TRACK})
        assert r.status_code == 202, r.text
        r = await client.post(f"/v1/identify?key={TRACK}", headers=BEACON,
                              content=b'{"anonymous_id": "a-2", "user_id": "u-2"}')
        assert r.status_code == 202, r.text
        # The header wins over a query key.
        r = await client.post("/v1/events?key=nonsense", json={**event, "event_id": "b-4"},
                              headers={"X-API-Key": TRACK})
        assert r.status_code == 202, r.text
    found = await asyncio.to_thread(envelopes, keyed)
    events = [e for _, env in found for e in env["events"]]
    assert {e["event_id"] for e in events if e["type"] == "view"} == {
        "beacon-1", "beacon-2", "beacon-3", "b-4"}
    assert not any("key" in e for e in events)
    assert {(e["anonymous_id"], e["user_id"]) for e in events if e["type"] == "identify"} == {
        ("a-1", "u-1"), ("a-2", "u-2")}


async def test_only_tracking_keys_travel_outside_the_header(keyed: Settings) -> None:
    event = {"type": "view", "anonymous_id": "a-1", "item_id": "x"}
    async with running(keyed) as client:
        for key in (READ, ADMIN):
            r = await client.post(f"/v1/events?key={key}", json=event)
            body = assert_error(r, 403, "forbidden")
            assert "X-API-Key" in body["error"]["message"]
            assert_error(await client.post("/v1/events", json={**event, "key": key}), 403)
            assert_error(await client.post(f"/v1/identify?key={key}", json={
                "anonymous_id": "a", "user_id": "u"}), 403)
        assert_error(await client.post("/v1/events?key=wrong", json=event), 401)
        assert_error(await client.post("/v1/events", json={**event, "key": "wrong"}), 401)
        # A body key that is not a string says so, not "missing key".
        for bad in (7, None, "", ["k"]):
            body = assert_error(await client.post("/v1/events", json={**event, "key": bad}),
                                401)
            assert '"key" must be a non-empty string' in body["error"]["message"]
        body = assert_error(await client.post("/v1/events", json=event), 401)
        assert "missing" in body["error"]["message"]
        # Never on other routes: there a query key is no key at all.
        for key in (TRACK, READ, ADMIN):
            assert_error(await client.get(f"/v1/popular?key={key}"), 401)
            assert_error(await client.get(f"/v1/users/u1/recommendations?key={key}"), 401)
            assert_error(await client.put(f"/v1/items/x?key={key}", json={"name": "x"}), 401)
            assert_error(await client.get(f"/v1/admin/attribution?key={key}"), 401)
        assert (await client.get("/v1/popular", headers={"X-API-Key": READ})).status_code == 200


async def test_cors_for_the_shop(keyed: Settings) -> None:
    origin = {"Origin": SHOP}
    async with running(keyed) as client:
        for path, method in (("/v1/events", "POST"), ("/v1/identify", "POST"),
                             ("/v1/users/u1/recommendations?n=4", "GET"),
                             ("/v1/items/x/similar", "GET"), ("/v1/popular", "GET")):
            r = await client.options(path, headers={
                **origin, "Access-Control-Request-Method": method,
                "Access-Control-Request-Headers": "x-api-key,content-type"})
            assert r.status_code == 200, (path, r.text)
            assert r.headers["access-control-allow-origin"] == SHOP
            allowed = r.headers["access-control-allow-headers"].lower()
            assert "x-api-key" in allowed and "content-type" in allowed
            assert method in r.headers["access-control-allow-methods"]
        r = await client.options("/v1/events", headers={
            **origin, "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "x-api-key,content-type,idempotency-key"})
        assert r.status_code == 200, r.text
        assert "idempotency-key" in r.headers["access-control-allow-headers"].lower()
        r = await client.get("/v1/users/u1/recommendations?n=4",
                             headers={**origin, "X-API-Key": READ})
        assert r.status_code == 200
        assert r.headers["access-control-allow-origin"] == SHOP
        assert "retry-after" in r.headers["access-control-expose-headers"].lower()
        r = await client.post(f"/v1/events?key={TRACK}", headers={**origin, **BEACON},
                              content=b'{"type": "view", "anonymous_id": "a", "item_id": "x"}')
        assert r.status_code == 202 and r.headers["access-control-allow-origin"] == SHOP
        # Errors carry the headers too, so a page can read the status and Retry-After.
        r = await client.post("/v1/events", headers={**origin, "X-API-Key": READ},
                              json={"type": "view", "anonymous_id": "a", "item_id": "x"})
        assert r.status_code == 403 and r.headers["access-control-allow-origin"] == SHOP
        # Another origin gets no CORS grant.
        r = await client.options("/v1/events", headers={
            "Origin": "https://evil.example", "Access-Control-Request-Method": "POST"})
        assert "access-control-allow-origin" not in r.headers


async def test_rate_limited_answer_is_readable_cross_origin(keyed: Settings) -> None:
    # one batch per 100 s: the requests after the first are refused however slow the
    # machine (at 1/s, requests more than a second apart, as on a stalled machine, all
    # got 202)
    limited = keyed.model_copy(update={"rate_limit_tracking_per_s": 0.01})
    event = {"type": "view", "anonymous_id": "a", "item_id": "x"}
    async with running(limited) as client:
        statuses = []
        for _ in range(3):
            r = await client.post(f"/v1/events?key={TRACK}", json=event,
                                  headers={"Origin": SHOP})
            statuses.append(r.status_code)
        assert statuses[0] == 202 and 429 in statuses
        assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
        assert r.headers["access-control-allow-origin"] == SHOP
        assert "retry-after" in r.headers["access-control-expose-headers"].lower()


async def test_beacon_without_keys_configured(settings: Settings) -> None:
    """Auth off (the embedded demo): a stray key anywhere is ignored, never an error."""
    from core.kafka_tools import create_topics

    create_topics(settings)
    async with running(settings) as client:
        r = await client.post("/v1/events?key=anything", headers=BEACON, content=orjson.dumps(
            {"type": "view", "anonymous_id": "a", "item_id": "x", "key": "x"}))
        assert r.status_code == 202, r.text
        assert (await client.get("/v1/popular?key=anything")).status_code == 200
