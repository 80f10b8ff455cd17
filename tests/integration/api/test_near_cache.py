"""The near cache (api/near_cache.py) on a real Redis: a repeated list is answered from
the process, and every write that changes it shows on the very next request: the
shopper's list, stock, deletion, a purchase, a promotion written by another API
process, a model swap, forgetting; a lost tracking connection never serves a stale
list and the cache refills after it is back; the bound holds; explain answers are never
kept; each answer gets its own recommendation id; an API started before its Redis gets
its cache once Redis is up."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import redis

from api.app import create_app
from api.reader import Reader
from api.tracking_conn import RETRY_S
from core.net import free_port
from core.redis_keys import RedisKeys
from core.settings import Settings
from streamrec.stack.servers import start_redis

pytestmark = pytest.mark.integration

K = RedisKeys()
ADMIN, READ = "admin-k-0123456789ab", "read-k-0123456789abc"
URL = "/v1/users/u1/recommendations?n=3"


@asynccontextmanager
async def api(settings: Settings, *, keyed: bool = False
              ) -> AsyncIterator[tuple[httpx.AsyncClient, Reader]]:
    """The app inside its lifespan, and its reader; ``keyed``: auth on (the read key's
    rate limit is checked on every hit), else off (no rate limit)."""
    keys = {"admin_keys": ADMIN, "read_keys": READ} if keyed else {}
    app = create_app(settings.model_copy(update=keys))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api",
                                     headers={"X-API-Key": READ} if keyed else {}
                                     ) as client:
            yield client, app.state.services.reader


def shelf(r: redis.Redis) -> None:
    """u1's list a..e over popular p1..p3, every item in the catalog and in stock."""
    r.set(K.user_recs("u1"), orjson.dumps({"v": "v1", "items": [
        [i, 1 - n / 10] for n, i in enumerate("abcde")]}))
    r.zadd(K.popular, {"p1": 3, "p2": 2, "p3": 1})
    for i in ["a", "b", "c", "d", "e", "p1", "p2", "p3"]:
        r.hset(K.item_meta(i), mapping={"name": i.upper(), "in_stock": "1", "deleted": "0"})
    r.set(K.model_current, "v1")


async def ids(client: httpx.AsyncClient, url: str = URL) -> list[str]:
    resp = await client.get(url)
    assert resp.status_code == 200, resp.text
    return [i["item_id"] for i in resp.json()["items"]]


def hits(reader: Reader) -> float:
    return float(reader._metrics.near_hits._value.get())


async def cached(client: httpx.AsyncClient, reader: Reader, url: str = URL) -> list[str]:
    """``url``'s items once answered from the cache (the first list of a process, and
    the first after the promotions copy is re-read, are not kept)."""
    for _ in range(4):
        before = hits(reader)
        got = await ids(client, url)
        if hits(reader) > before:
            return got
        if reader.near is not None and not reader.near.live:
            await wait_live(reader, 5)  # tracking rested until this list woke it
    raise AssertionError(f"{url} is never answered from the near cache")


async def wait_live(reader: Reader, seconds: float = 10) -> None:
    """Until the reader's near cache is live (a few ``RETRY_S`` after Redis is up)."""
    near = reader.near
    assert near is not None
    for _ in range(int(seconds / RETRY_S) * 10):
        if near.live:
            return
        await asyncio.sleep(RETRY_S / 10)
    raise AssertionError("the near cache never went live")


@pytest.fixture
def r(settings: Settings) -> Any:
    client = redis.Redis.from_url(settings.redis_url, decode_responses=True)
    shelf(client)
    yield client
    client.close()


@pytest.mark.parametrize("keyed", [False, True])
async def test_a_repeated_list_is_a_hit_with_its_own_recommendation_id(
        settings: Settings, r: redis.Redis, keyed: bool) -> None:
    async with api(settings, keyed=keyed) as (client, reader):
        assert reader.near is not None
        await client.get(URL)  # (the first list of a process reads the promotions)
        await wait_live(reader, 5)  # (and wakes tracking if it rested: DORMANT_AFTER_S)
        first = (await client.get(URL)).json()
        before = hits(reader)
        second = (await client.get(URL)).json()
        assert hits(reader) == before + 1
        assert first["recommendation_id"] != second["recommendation_id"]
        assert {**first, "recommendation_id": ""} == {**second, "recommendation_id": ""}
        head = (await client.head(URL))
        assert head.status_code == 200 and hits(reader) == before + 2


@pytest.mark.parametrize("keyed", [False, True])
@pytest.mark.parametrize("change", ["list", "stock", "deleted", "purchase", "forget"])
async def test_a_write_shows_on_the_very_next_request(settings: Settings, r: redis.Redis,
                                                      change: str, keyed: bool) -> None:
    async with api(settings, keyed=keyed) as (client, reader):
        assert await cached(client, reader) == ["a", "b", "c"]
        if change == "list":  # as the worker's writer rewrites it
            r.set(K.user_recs("u1"), orjson.dumps({"v": "v1", "items": [["e", 1], ["d", .5]]}))
        elif change == "stock":
            r.hset(K.item_meta("a"), "in_stock", "0")
            r.sadd(K.unavailable, "a")
        elif change == "deleted":
            r.hset(K.item_meta("a"), "deleted", "1")
            r.sadd(K.unavailable, "a")
            r.sadd(K.deleted, "a")
        elif change == "purchase":
            r.zadd(K.user_bought("u1"), {"a": 1})
        else:  # what forgetting erases (stream.forget): every per-entity key
            r.delete(*K.entity_keys("u1"))
        got = await ids(client)
        assert got != ["a", "b", "c"] and "a" not in got[:1]
        assert await ids(client) == got


async def test_a_model_swap_shows_on_the_next_request(settings: Settings,
                                                      r: redis.Redis) -> None:
    async with api(settings) as (client, reader):
        await cached(client, reader)
        r.set(K.model_current, "v2")
        assert (await client.get(URL)).json()["model_version"] == "v2"


async def test_a_promotion_written_by_another_process_shows_at_once(
        settings: Settings, r: redis.Redis) -> None:
    admin = {"X-API-Key": ADMIN}
    async with api(settings, keyed=True) as (client, reader), \
            api(settings, keyed=True) as (other, _):
        assert await cached(client, reader) == ["a", "b", "c"]
        put = await other.put("/v1/admin/promotions/x", headers=admin,
                              json={"item_ids": ["p3"], "share": 0.3})
        assert put.status_code == 200, put.text
        assert await ids(client) == ["p3", "a", "b"]
        assert await cached(client, reader) == ["p3", "a", "b"]
        assert (await other.delete("/v1/admin/promotions/x", headers=admin)).status_code == 200
        assert await ids(client) == ["a", "b", "c"]


@pytest.mark.parametrize("which", ["listener", "serve"])
async def test_a_killed_tracking_connection_never_serves_a_stale_list(
        settings: Settings, r: redis.Redis, which: str) -> None:
    async with api(settings) as (client, reader):
        assert await cached(client, reader) == ["a", "b", "c"]
        # the subscribed listener, or the serve connection (tracking on: flag "t")
        killed = [c["id"] for c in r.client_list()
                  if (c.get("cmd") == "subscribe" if which == "listener"
                      else "t" in c.get("flags", ""))]
        assert killed
        for client_id in killed:
            r.client_kill_filter(_id=client_id)
        r.set(K.user_recs("u1"), orjson.dumps({"v": "v1", "items": [["e", 1], ["d", .5]]}))
        assert (await ids(client))[0] == "e"
        await wait_live(reader, 5)  # back within a few RETRY_S
        assert (await cached(client, reader))[0] == "e"


async def test_the_bound_holds_and_explain_answers_are_never_kept(
        settings: Settings, r: redis.Redis) -> None:
    async with api(settings.model_copy(update={"serve_cache_entries": 2})) as (client, reader):
        near = reader.near
        assert near is not None
        for n in range(1, 6):
            await ids(client, f"/v1/users/u1/recommendations?n={n}")
        assert len(near) == 2
        before = hits(reader)
        for _ in range(3):
            body = (await client.get(URL + "&explain=true")).json()
            assert "trace" in body
        assert hits(reader) == before


async def test_an_api_started_before_its_redis_gets_its_cache_once_redis_is_up(
        settings: Settings, tmp_path: Path) -> None:
    port = free_port()
    later = settings.model_copy(update={"redis_url": f"redis://127.0.0.1:{port}/0"})
    async with api(later) as (client, reader):
        assert reader.near is not None and not reader.near.live
        srv = start_redis(tmp_path, port=port)
        try:
            r = redis.Redis(host=srv.host, port=srv.port, decode_responses=True)
            shelf(r)
            await wait_live(reader)
            assert await cached(client, reader) == ["a", "b", "c"]
            r.set(K.user_recs("u1"), orjson.dumps({"v": "v1", "items": [["e", 1]]}))
            assert (await ids(client))[0] == "e"
            r.close()
        finally:
            srv.stop()


async def test_tracking_rests_without_lists_and_a_list_wakes_it(
        settings: Settings, r: redis.Redis, monkeypatch: pytest.MonkeyPatch) -> None:
    """No cacheable list for DORMANT_AFTER_S: tracking is off on the serve connection
    (Redis no longer reports every write) and the cache empty and unused; a write
    meanwhile is never served stale; the next list turns tracking on again and the cache
    fills again."""
    from api import tracking_conn

    monkeypatch.setattr(tracking_conn, "DORMANT_AFTER_S", 1.0)

    def tracking() -> bool:
        return any("t" in c.get("flags", "") for c in r.client_list())

    async with api(settings) as (client, reader):
        near = reader.near
        assert near is not None
        assert await cached(client, reader) == ["a", "b", "c"]
        for _ in range(int(5 / RETRY_S) * 10):  # idle: within DORMANT_AFTER_S + RETRY_S
            if not tracking():
                break
            await asyncio.sleep(RETRY_S / 10)
        assert not tracking() and not near.live and len(near) == 0
        r.set(K.user_recs("u1"), orjson.dumps({"v": "v1", "items": [["e", 1], ["d", .5]]}))
        assert (await ids(client))[0] == "e"  # read from Redis: tracking rests
        await wait_live(reader, 5)  # that list woke it
        assert tracking()
        assert (await cached(client, reader))[0] == "e"
