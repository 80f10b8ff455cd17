"""``SERVE_ONE`` (one round trip on one Redis) against ``SERVE`` after the reads of
``api.gather`` (the Redis Cluster's way), on a real redis-server: the same replies, the
same item keys, the same rate limit. ``test_serve_script.py`` compares the two on every
serving rule it tests; this file covers what only the one-trip script does itself."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
import redis

from api.gather import ServeInputs, serve_list, serve_one
from api.serve_script import _PRELUDE, lua_source
from core.redis_client import async_client, run_batch, sync_client
from core.redis_keys import RedisKeys
from core.settings import Settings

pytestmark = pytest.mark.integration

K = RedisKeys()
SHARED = [K.model_current, K.unavailable, K.popular]


@pytest.fixture
def r(settings: Settings) -> Iterator[redis.Redis]:
    """A client of the test's (empty) standalone Redis."""
    client = sync_client(settings, decode_responses=True)
    yield client
    client.close()


def _inputs(settings: Settings, links: list[dict[str, Any]], **kw: Any) -> ServeInputs:
    request = {"n": 10, "page": 30, "scan": 500, "v": K.model_current,
               "un": K.unavailable, "meta": K.split("item_meta"), "catalog": False,
               "ex": [], "src": [dict(link) for link in links], **kw.pop("fields", {})}
    return ServeInputs(request, (), keys=K, settings=settings, **kw)


def _numbers(reply: list[Any]) -> list[Any]:
    """Numbers as values: redis-py hands the gather sorted-set scores as floats (which
    travel on as ``repr``), the script reads them as Redis wrote them."""
    out = []
    for value in reply:
        try:
            out.append(float(value) if isinstance(value, str) else value)
        except ValueError:
            out.append(value)
    return out


def _both(settings: Settings, links: list[dict[str, Any]], **kw: Any) -> list[Any]:
    async def run() -> list[Any]:
        client = async_client(settings, decode_responses=True)
        try:
            def batch(calls: Any) -> Any:
                return run_batch(client, calls)

            multi = await serve_list(batch, _inputs(settings, links, **kw), SHARED)
            one = await serve_one(batch, _inputs(settings, links, **kw), SHARED, rate=None)
            assert _numbers(one) == _numbers(multi)
            return one
        finally:
            await client.aclose()

    return asyncio.run(run())


@pytest.mark.parametrize("item", [
    "sku-1", "a", "x" * 128, "é", "日本語の商品", "😀-emoji", "with space", "0", "-1",
    "UPPER_lower.123", "ÿ" * 40,
])
def test_item_keys_built_in_lua_are_those_of_core_redis_keys(r: redis.Redis,
                                                              item: str) -> None:
    # the bucket rule (CRC-32 of the UTF-8 bytes) in Lua, against zlib's in Python
    script = r.register_script(_PRELUDE + lua_source("inline")
                               + "return INLINE.item_key(cjson.decode(ARGV[1]), ARGV[2])")
    assert script(keys=[], args=[orjson.dumps(K.bucketed("item_cooc")), item]) == \
        K.item_cooc(item)


def test_anchor_links_read_in_the_script_as_the_gather_reads_them(
        settings: Settings, r: redis.Redis) -> None:
    r.set(K.item_similar("anchor"), orjson.dumps(
        {"items": [["s1", 0.9], ["s2", 0.5], ["anchor", 0.4]]}))
    r.zadd(K.item_cooc("anchor"), {"c1": 5, "s2": 3, "c2": 1})
    r.zadd(K.popular, {"p1": 10, "p2": 5})
    for explain in (False, True):
        fields = {"ex": ["anchor"], "an": ["anchor"], **({"x": True} if explain else {})}
        reply = _both(settings, [{"k": "item_similar"}, {"k": "item_cooc"},
                                 {"k": "zset", "key": K.popular}],
                      entity=None, anchor="anchor", context="product", fields=fields)
        first = 7 + 2 * int(reply[5])
        assert [reply[at + 3] for at in range(first, first + 11 * int(reply[6]), 11)] == [
            "s1", "s2", "c1", "c2", "p1", "p2"]
    # a missing neighbour list and co-occurrence read as empty in both
    _both(settings, [{"k": "item_similar"}, {"k": "item_cooc"}], entity=None,
          anchor="gone", context="product", fields={"ex": ["gone"]})


def test_the_personal_list_and_the_session_are_read_in_the_script(
        settings: Settings, r: redis.Redis) -> None:
    r.set(K.user_recs("u"), orjson.dumps({"items": [["a", 0.9], ["b", 0.8]]}))
    r.set(K.user_recent("u"), orjson.dumps(["v1", "v1", "日本", "bad\n", 3]))
    r.zadd(K.item_cooc("v1"), {"x": 3, "a": 1})
    r.zadd(K.item_cooc("日本"), {"y": 2})
    r.zadd(K.user_bought("u"), {"x": 1.0})
    reply = _both(settings, [{"k": "user_recs"}, {"k": "session"}],
                  entity="u", anchor=None, context="home")
    first = 7 + 2 * int(reply[5])
    # x was bought: filtered; y comes from the second distinct valid recent item
    assert [reply[at + 3] for at in range(first, first + 11 * int(reply[6]), 11)] == [
        "a", "b", "y"]


def test_the_rate_limit_refuses_before_anything_is_read(settings: Settings) -> None:
    limited: list[float] = []

    async def run() -> list[Any]:
        client = async_client(settings, decode_responses=True)
        try:
            out = []
            for _ in range(3):
                out.append(await serve_one(
                    lambda calls: run_batch(client, calls),
                    _inputs(settings, [{"k": "zset", "key": K.popular}], entity=None,
                            anchor=None, context="popular"),
                    SHARED, rate=(K.rate_limit("read", "k"), 10.0, 2),
                    on_limit=lambda wait: limited.append(float(wait))))
            return out
        finally:
            await client.aclose()

    replies = asyncio.run(run())
    assert [reply[0] for reply in replies] == ["ok", "ok", "limited"]
    assert len(limited) == 1 and 0 < limited[0] <= 10.0
