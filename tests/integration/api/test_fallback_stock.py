"""The API's fallback snapshot (served while Redis is away) follows stock: an item that
goes out of stock or is deleted leaves it within about a second, on a real Redis."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from api.app import create_app
from core.redis_keys import RedisKeys
from core.settings import Settings
from streamrec.stack.servers import start_redis
from tests.polling import wait_for_async

pytestmark = pytest.mark.integration

K = RedisKeys()


async def served(client: httpx.AsyncClient, url: str) -> list[str]:
    resp = await client.get(url)
    assert resp.status_code == 200, resp.text
    body: dict[str, Any] = resp.json()
    assert body["source"] == "fallback", body
    return [i["item_id"] for i in body["items"]]


async def test_fallback_snapshot_drops_items_gone_out_of_stock_within_a_second(
        settings: Settings, tmp_path: Path) -> None:
    """Sold out (or deleted) a second before Redis goes away: no fallback list shows it,
    although the snapshot's full refresh comes only every 5 s (API.md: an item with
    ``in_stock: false`` is never returned by any recommendation endpoint)."""
    own = start_redis(tmp_path)
    try:
        mine = settings.model_copy(update={"redis_url": f"redis://{own.address}/0"})
        writer = redis.Redis.from_url(mine.redis_url)
        writer.zadd(K.popular, {"p1": 5, "p2": 4, "p3": 3, "p4": 2})
        app = create_app(mine)
        async with app.router.lifespan_context(app):
            snapshot = app.state.services.reader.snapshot
            await wait_for_async(lambda: snapshot.size, 2.5, "the fallback snapshot filled")
            assert snapshot.size == 4
            # what the worker's catalog writer does for in_stock false and for a deletion
            writer.sadd(K.unavailable, "p1", "p3")
            writer.close()
            # the snapshot's check for unavailable items (every second), polled for: a
            # fixed 1.2 s sleep lost that race on a loaded machine
            await wait_for_async(lambda: snapshot.size == 2, 30,
                                 "the sold-out and deleted items dropped from the snapshot")
            own.stop()
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
                for url in ("/v1/popular?n=5", "/v1/users/u1/recommendations?n=5",
                            "/v1/users/u1/recommendations?n=5&context=cart",
                            "/v1/items/p2/similar?n=5", "/v1/trending?n=5"):
                    assert not {"p1", "p3"} & set(await served(client, url)), url
                assert await served(client, "/v1/popular") == ["p2", "p4"]
    finally:
        own.stop()
