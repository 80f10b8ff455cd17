"""Tracking writes against real Tansu and redis-server: limits per client counting events,
failing closed; server-made ids a client can retry with; Idempotency-Key; ops endpoints
behind keys.
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from typing import Any

import httpx
import orjson
import pytest
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from api.app import create_app
from core import kafka_tools
from core.net import free_port
from core.settings import Settings
from tests.integration.api.app_client import running as app_running

pytestmark = pytest.mark.integration

TRACK, READ, ADMIN = "trk-limits-0123456789", "read-limits-012345678", "adm-limits-0123456789"


def running(settings: Settings, address: str = "203.0.113.7"
            ) -> AbstractAsyncContextManager[httpx.AsyncClient]:
    """The app as a shopper's browser at ``address`` reaches it (not loopback: every
    tracking limit applies)."""
    return app_running(settings, wait_ready=False, address=address)


def keyed(settings: Settings, **overrides: Any) -> Settings:
    kafka_tools.create_topics(settings)
    return settings.model_copy(update={"tracking_keys": TRACK, "read_keys": READ,
                                       "admin_keys": ADMIN, **overrides})


def views(entity: str, n: int, **extra: Any) -> dict[str, Any]:
    return {"events": [{"type": "view", "anonymous_id": entity, "item_id": f"i{i}", **extra}
                       for i in range(n)]}


async def post(client: httpx.AsyncClient, body: Any, key: str = TRACK,
               **headers: str) -> httpx.Response:
    return await client.post("/v1/events", json=body, headers={"X-API-Key": key, **headers})


async def test_one_id_cannot_spend_what_the_others_share(settings: Settings) -> None:
    s = keyed(settings, rate_limit_entity_per_s=0.01, rate_limit_entity_burst=5)
    async with running(s) as client:
        assert (await post(client, views("bot", 5))).status_code == 202
        refused = await post(client, views("bot", 1))
        assert refused.status_code == 429 and int(refused.headers["Retry-After"]) >= 1
        assert "user/anonymous id" in refused.json()["error"]["message"]
        # A batch naming the exhausted id is refused whole, and charges nobody else.
        mixed = {"events": views("shopper", 1)["events"] + views("bot", 1)["events"]}
        assert (await post(client, mixed)).status_code == 429
        assert (await post(client, views("shopper", 5))).status_code == 202
        # An idle id may send one batch above its burst (an SDK outbox after a while
        # offline), then waits.
        assert (await post(client, views("returning", 40))).status_code == 202
        assert (await post(client, views("returning", 1))).status_code == 429
        # Operators' admin keys skip the per-id and per-address buckets.
        assert (await post(client, views("bot", 3), key=ADMIN)).status_code == 202
        metrics = (await client.get("/metrics")).text
        assert 'streamrec_api_rate_limited_events_total{scope="id"}' in metrics
    # This machine's own tools (loopback) are charged against the key only.
    async with running(s, address="127.0.0.1") as client:
        assert (await post(client, views("bot", 3))).status_code == 202


async def test_a_forwarded_loopback_address_is_charged_like_any_shopper(
        settings: Settings) -> None:
    """Behind compose's proxy the API trusts "*", and uvicorn then takes the first entry
    of X-Forwarded-For, which the shopper writes: "127.0.0.1, <real>" (a proxy that
    appends) or "::1" (one that passes the header on) made the request local, skipping
    the address and id limits. Forwarded requests are never local."""
    s = keyed(settings, rate_limit_entity_per_s=0.01, rate_limit_entity_burst=5)
    app = create_app(s)
    proxied = ProxyHeadersMiddleware(app, trusted_hosts="*")
    transport = httpx.ASGITransport(app=proxied, client=("127.0.0.1", 4321))
    async with app.router.lifespan_context(app), httpx.AsyncClient(
            transport=transport, base_url="http://api") as client:
        for n, spoof in enumerate(("127.0.0.1, 203.0.113.9", "::1", "localhost",
                                   "[::1]:80, 203.0.113.9")):
            entity = f"spoof-{n}"
            assert (await post(client, views(entity, 5), **{"X-Forwarded-For": spoof})
                    ).status_code == 202
            refused = await post(client, views(entity, 1), **{"X-Forwarded-For": spoof})
            assert refused.status_code == 429, (spoof, refused.text)
            assert "user/anonymous id" in refused.json()["error"]["message"]
        # The machine's own tools (loopback, no proxy header) are still exempt.
        for _ in range(3):
            assert (await post(client, views("spoof-0", 5))).status_code == 202


async def test_keys_outside_the_header_are_charged_like_header_keys(
        settings: Settings) -> None:
    """Beacons send the tracking key as ``?key=`` or a body ``"key"``: the same per-key,
    per-address and per-id limits apply to them."""
    s = keyed(settings, rate_limit_entity_per_s=0.01, rate_limit_entity_burst=5)
    beacon = {"Content-Type": "text/plain;charset=UTF-8"}
    async with running(s) as client:
        r = await client.post(f"/v1/events?key={TRACK}", headers=beacon,
                              content=orjson.dumps(views("tab", 5)))
        assert r.status_code == 202, r.text
        in_body = {**views("tab", 1), "key": TRACK}
        refused = await client.post("/v1/events", headers=beacon, content=orjson.dumps(in_body))
        assert refused.status_code == 429, refused.text
        assert "user/anonymous id" in refused.json()["error"]["message"]
        ident = await client.post(f"/v1/identify?key={TRACK}",
                                  json={"anonymous_id": "tab", "user_id": "u-tab"})
        assert ident.status_code == 429, ident.text
        other = {"anonymous_id": "tab-2", "user_id": "u-tab-2", "key": TRACK}
        assert (await client.post("/v1/identify", json=other)).status_code == 202


async def test_one_address_is_limited_in_events_not_requests(settings: Settings) -> None:
    s = keyed(settings, rate_limit_address_per_s=0.01, rate_limit_address_burst=10)
    async with running(s, address="2001:db8::1") as client:
        assert (await post(client, views("a", 10))).status_code == 202
        refused = await post(client, views("b", 1))
        assert refused.status_code == 429
        assert "source address" in refused.json()["error"]["message"]
    # The same /64 is the same bucket; another /64 is not.
    async with running(s, address="2001:db8::2") as client:
        assert (await post(client, views("c", 1))).status_code == 429
    async with running(s, address="2001:db8:0:1::1") as client:
        assert (await post(client, views("d", 1))).status_code == 202


async def test_limits_fail_closed_when_redis_cannot_count(settings: Settings) -> None:
    s = keyed(settings, redis_url=f"redis://127.0.0.1:{free_port()}/0")
    async with running(s) as client:
        resp = await post(client, views("x", 2))
        assert resp.status_code == 503 and int(resp.headers["Retry-After"]) >= 1
        body = resp.json()
        assert len(body["event_ids"]) == 2  # server-made ids the client can retry with
        ident = await client.post("/v1/identify", headers={"X-API-Key": TRACK},
                                  json={"anonymous_id": "a", "user_id": "u"})
        assert ident.status_code == 503 and len(ident.json()["event_ids"]) == 1
        # Reads still answer (from the fallback snapshot).
        popular = await client.get("/v1/popular", headers={"X-API-Key": READ})
        assert popular.status_code == 200
    # With every tracking limit off there is nothing to count: accepted.
    off = s.model_copy(update={"rate_limit_tracking_per_s": 0, "rate_limit_entity_per_s": 0,
                               "rate_limit_address_per_s": 0})
    async with running(off) as client:
        assert (await post(client, views("x", 2))).status_code == 202


async def test_broker_down_503_returns_the_ids_to_retry_with(settings: Settings) -> None:
    s = keyed(settings, kafka_bootstrap=f"127.0.0.1:{free_port()}", produce_timeout_s=0.5)
    async with running(s) as client:
        body = views("y", 3)
        body["events"][0]["event_id"] = "client-made"
        resp = await post(client, body)
        assert resp.status_code == 503 and resp.json()["error"]["code"] == "broker_unavailable"
        ids = resp.json()["event_ids"]
        assert ids[0] == "client-made" and len(set(ids)) == 3


async def test_idempotency_key_makes_a_batch_retry_safe(settings: Settings) -> None:
    s = keyed(settings)
    async with running(s) as client:
        body = views("z", 3)
        first = await post(client, body, **{"Idempotency-Key": "order-42"})
        assert first.status_code == 202 and "Idempotent-Replayed" not in first.headers
        ids = first.json()["event_ids"]
        assert all(i.startswith("ik-") for i in ids)
        again = await post(client, body, **{"Idempotency-Key": "order-42"})
        assert again.status_code == 202 and again.json()["event_ids"] == ids
        assert again.headers["Idempotent-Replayed"] == "true"
        other = await post(client, views("z", 2), **{"Idempotency-Key": "order-42"})
        assert other.status_code == 422
        assert other.json()["detail"][0]["loc"] == ["header", "Idempotency-Key"]
        # Another key of the same batch is another batch (new ids).
        fresh = await post(client, body, **{"Idempotency-Key": "order-43"})
        assert fresh.status_code == 202 and set(fresh.json()["event_ids"]).isdisjoint(ids)
        assert (await post(client, body, **{"Idempotency-Key": "x" * 300})).status_code == 422
        # Without the header every request gets new ids.
        plain = [(await post(client, body)).json()["event_ids"] for _ in range(2)]
        assert set(plain[0]).isdisjoint(plain[1])


async def test_a_shopper_cannot_claim_the_idempotency_key_of_another(
        settings: Settings) -> None:
    """The tracking key is public, so it does not tell shoppers apart: a key sent first by
    an attacker with a batch of its own made a victim's batch with that key a 422 for the
    key's whole TTL. A key now names a batch of the ids it names, like event ids."""
    s = keyed(settings)
    async with running(s) as client:
        claimed = await post(client, views("attacker", 1), **{"Idempotency-Key": "cart-7"})
        assert claimed.status_code == 202
        victim = views("victim", 2)
        first = await post(client, victim, **{"Idempotency-Key": "cart-7"})
        assert first.status_code == 202, first.text
        assert "Idempotent-Replayed" not in first.headers
        assert set(first.json()["event_ids"]).isdisjoint(claimed.json()["event_ids"])
        # The victim's own retry is still answered from the first attempt.
        again = await post(client, victim, **{"Idempotency-Key": "cart-7"})
        assert again.headers["Idempotent-Replayed"] == "true"
        assert again.json()["event_ids"] == first.json()["event_ids"]


async def test_metrics_and_docs_can_require_a_key(settings: Settings) -> None:
    s = keyed(settings, ops_require_key=True)
    async with running(s) as client:
        assert (await client.get("/metrics")).status_code == 401
        assert (await client.get("/metrics", headers={"X-API-Key": READ})).status_code == 403
        assert (await client.get("/metrics", headers={"X-API-Key": ADMIN})).status_code == 200
        for path in ("/docs", "/openapi.json", "/"):
            assert (await client.get(path)).status_code == 401
            assert (await client.get(path, headers={"X-API-Key": READ})).status_code == 200
        assert (await client.get("/healthz")).status_code == 200
    async with running(keyed(settings)) as client:  # off by default
        assert (await client.get("/metrics")).status_code == 200
