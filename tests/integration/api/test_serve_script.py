"""The serving rules as production runs them: the Lua of ``api.serve_script`` on a real
redis-server, called with the JSON request ``api.reader.Reader`` builds after the reads
of ``api.gather`` (which fill in what lives outside the shared slot).

These rules (valid ids and scores, merging, catalog flags, purchase, cart and stock
filters, distinct buyers, the rate limits) exist only in Lua; the HTTP-level tests in
``test_recommend.py`` and ``test_serving.py`` check the same rules through the routes.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Callable
from typing import Any

import orjson
import pytest
import redis

from api.gather import ServeInputs, serve_list, serve_one
from api.serve_script import RATE_LIMIT, RATE_LIMIT_EVENTS
from core.limits import MAX_ID_LEN, SESSION_ITEMS, id_problem
from core.merch_keys import COLUMNS_VERSION
from core.redis_client import async_client, is_cluster, run_batch
from core.redis_keys import RedisKeys
from core.settings import Settings
from schemas import CatalogRecord
from stream.redis_writer import RedisWriter

pytestmark = pytest.mark.integration

K = RedisKeys()

#: One chosen item of the reply: link, position, raw score, id, name, price, currency,
#: category, affinity, stored reason, via (see api.serve_script).
Item = list[Any]
Serve = Callable[..., list[Item]]


@pytest.fixture
def settings(either_redis: Settings) -> Settings:
    """Every rule on one Redis and on a Redis Cluster (the scripts' keys share a slot)."""
    return either_redis



def serve_reply(settings: Settings, links: list[dict[str, Any]], *, n: int = 10,
                entity: str | None = None, anchor: str | None = None,
                context: str = "home", **fields: Any) -> list[Any]:
    """SERVE's whole reply for these links, after the reads of ``api.gather``; on one
    Redis also ``SERVE_ONE``'s (one round trip, the reads inside Redis), which must be
    the same."""

    def inputs() -> ServeInputs:
        request = {"n": n, "page": n + 20, "scan": 30 * n + 200, "v": K.model_current,
                   "un": K.unavailable, "meta": K.split("item_meta"), "catalog": False,
                   "ex": [], "src": [dict(link) for link in links],
                   **copy.deepcopy(fields)}
        return ServeInputs(request, (), entity=entity, anchor=anchor, context=context,
                           keys=K, settings=settings)

    async def run() -> list[Any]:
        client = async_client(settings, decode_responses=True)
        try:
            shared = [K.model_current, K.unavailable, K.popular]
            reply = await serve_list(lambda calls: run_batch(client, calls), inputs(),
                                     shared)
            if not is_cluster(settings):
                assert await serve_one(lambda calls: run_batch(client, calls), inputs(),
                                       shared, rate=None) == reply
            return reply
        finally:
            await client.aclose()

    return asyncio.run(run())


@pytest.fixture
def serve(settings: Settings) -> Serve:
    """Run SERVE with these links (and request fields); the chosen items of the reply."""

    def run(*links: dict[str, Any], n: int = 10, **fields: Any) -> list[Item]:
        reply = serve_reply(settings, list(links), n=n, **fields)
        assert reply[0] == "ok", reply
        first = 7 + 2 * int(reply[5])
        return [reply[at:at + 11] for at in range(first, first + 11 * int(reply[6]), 11)]

    return run


def ids(items: list[Item]) -> list[str]:
    return [item[3] for item in items]


def popular() -> dict[str, Any]:
    return {"k": "zset", "key": K.popular}


def test_sorted_set_entries_need_a_valid_id_and_a_finite_score(serve: Serve,
                                                                r: redis.Redis) -> None:
    r.zadd(K.popular, {"a": 2, "b": float("inf"), "": 1, "x" * (MAX_ID_LEN + 1): 1,
                       "x" * MAX_ID_LEN: 0.5, "c": 1, "d": float("-inf")})
    items = serve(popular())
    assert ids(items) == ["a", "c", "x" * MAX_ID_LEN]
    # link 1, positions among the valid entries, raw scores as stored
    assert [(item[0], item[1], float(item[2])) for item in items] == [
        (1, 0, 2.0), (1, 1, 1.0), (1, 2, 0.5)]


@pytest.mark.parametrize("candidate", [
    "é" * MAX_ID_LEN, "é" * (MAX_ID_LEN + 1), "x" * MAX_ID_LEN, "x" * (MAX_ID_LEN + 1),
    "日本" * (MAX_ID_LEN // 2), "😀" * MAX_ID_LEN, "😀" * (MAX_ID_LEN + 1), "é" * 129 + "\x85",
    "a\x00b", "tab\tid", "line\n", "del\x7f", "c1\x85", "c1\x9f", "nbsp\xa0", "ÿ", "日本",
])
def test_the_id_rule_is_the_one_of_core_limits(serve: Serve, r: redis.Redis,
                                               candidate: str) -> None:
    """Characters, not UTF-8 bytes, and no C0/DEL/C1 control characters: the Lua's
    ``valid_id`` agrees with ``core.limits.id_problem`` on every case."""
    r.zadd(K.popular, {candidate: 1})
    assert (ids(serve(popular())) == [candidate]) == (id_problem(candidate) is None)


def test_prepared_json_lists_keep_valid_entries_best_first(serve: Serve,
                                                            r: redis.Redis) -> None:
    doc = {"v": "m1", "ts": 1.0, "items": [
        ["a", 0.5], ["b", 0.9], ["", 1], ["x" * (MAX_ID_LEN + 1), 1], [3, 1], ["c", "nan"],
        ["d"], ["e", None], {"item_id": "f", "score": 0.7}, ["g", True]]}
    r.set(K.user_recs("u"), orjson.dumps(doc))
    r.set(K.user_recs("bare"), orjson.dumps([["a", 1], ["b", 2]]))
    link = {"k": "user_recs"}
    assert [(item[3], float(item[2])) for item in serve(link, entity="u")] == [
        ("b", 0.9), ("f", 0.7), ("a", 0.5)]
    assert ids(serve(link, entity="bare")) == ["b", "a"]
    for n, bad in enumerate(("", "not json", "{}", '{"items": 3}', "[1, 2]")):
        r.set(K.user_recs(f"bad{n}"), bad)
        assert serve(link, entity=f"bad{n}") == [], bad
    assert serve(link, entity="absent") == []
    r.sadd(K.user_recs("typed"), "a")  # a wrongly typed key reads as empty
    assert serve(link, entity="typed") == []


def test_session_merges_cooccurrence_of_recent_items_ties_by_id(serve: Serve,
                                                                r: redis.Redis) -> None:
    quiet = [f"q{k}" for k in range(SESSION_ITEMS - 2)]  # recent items without partners
    r.set(K.user_recent("s"), orjson.dumps(["s1", "s2", "s1", "", 3, *quiet, "s3"]))
    r.zadd(K.item_cooc("s1"), {"x": 3, "y": 1, "b": 1})
    r.zadd(K.item_cooc("s2"), {"y": 3, "a": 1})
    r.zadd(K.item_cooc("s3"), {"late": 100})  # beyond the SESSION_ITEMS newest distinct
    items = serve({"k": "session"}, entity="s")
    assert [(item[3], float(item[2])) for item in items] == [
        ("y", 4.0), ("x", 3.0), ("a", 1.0), ("b", 1.0)]


@pytest.mark.parametrize(("fields", "served"), [
    ({}, True),
    ({"in_stock": "1", "deleted": "0"}, True),
    ({"in_stock": "true", "deleted": "no"}, True),
    ({"in_stock": "0"}, False),
    ({"in_stock": " False "}, False),
    ({"in_stock": "off"}, False),
    ({"in_stock": "NO"}, False),
    ({"in_stock": "maybe"}, True),  # only the listed words say out of stock
    ({"deleted": "1"}, False),
    ({"deleted": " Yes"}, False),
    ({"deleted": "on"}, False),
    ({"deleted": "TRUE"}, False),
    ({"deleted": "perhaps"}, True),
])
def test_catalog_flags(serve: Serve, r: redis.Redis, fields: dict[Any, str],
                       served: bool) -> None:
    r.zadd(K.popular, {"item": 1})
    if fields:
        r.hset(K.item_meta("item"), mapping=fields)
    assert ids(serve(popular())) == (["item"] if served else [])


def test_catalog_fields_and_what_a_price_must_be(serve: Serve, r: redis.Redis) -> None:
    prices = {"plain": "4.50", "free": "free", "negative": "-1", "inf": "inf", "nan": "nan"}
    r.zadd(K.popular, {item: 10 - k for k, item in enumerate(prices)})
    for item, price in prices.items():
        r.hset(K.item_meta(item), mapping={"name": item.upper(), "price": price,
                                           "currency": "EUR", "category": ""})
    items = {item[3]: item[4:8] for item in serve(popular())}
    assert items["plain"] == ["PLAIN", "4.50", "EUR", None]  # empty category: absent
    assert {item: fields[1] for item, fields in items.items() if item != "plain"} == {
        "free": None, "negative": None, "inf": None, "nan": None}


def test_unavailable_uncatalogued_excluded_and_purchased_items_are_skipped(
        serve: Serve, r: redis.Redis) -> None:
    r.zadd(K.popular, {f"i{k}": 10 - k for k in range(8)})
    r.hset(K.item_meta("i0"), mapping={"name": "zero"})
    r.sadd(K.unavailable, "i1")
    r.zadd(K.user_bought("small"), {"i2": 1.0})  # purchases: item -> time
    # the oldest of many purchases (the worker keeps bought_max of them: all are read)
    r.zadd(K.user_bought("large"), {"i2": 1.0, **{f"other{k}": 2.0 + k for k in range(400)}})
    for who in ("small", "large"):
        assert ids(serve(popular(), ex=["i3"], entity=who)) == [
            "i0", "i4", "i5", "i6", "i7"], who
    assert ids(serve(popular(), catalog=True)) == ["i0"]
    assert ids(serve(popular(), n=2)) == ["i0", "i2"]


def test_chain_links_fill_in_order_without_repeating_an_item(settings: Settings,
                                                             r: redis.Redis) -> None:
    r.set(K.user_recs("u"), orjson.dumps({"v": "m", "items": [["a", 0.9], ["b", 0.5]]}))
    r.zadd(K.popular, {"b": 9, "p": 5, "q": 1})
    r.set(K.model_current, "m7")
    reply = serve_reply(settings, [{"k": "user_recs"}, {"k": "none"}, popular()], n=3,
                        entity="u")
    assert reply[:7] == ["ok", "m7", None, "0", "0", 3, 3]  # 3 links, 3 items
    assert [float(x) for x in reply[7:13]] == [0.5, 0.9, 0.0, 0.0, 1.0, 9.0]  # lo, hi
    assert [(item[0], item[3]) for item in (reply[13:24], reply[24:35], reply[35:46])] == [
        (1, "a"), (1, "b"), (3, "p")]
    assert reply[46:] == [0]  # no names asked for, no trace


def test_rate_limit_admits_the_burst_then_says_how_long_to_wait(r: redis.Redis) -> None:
    state = K.rate_limit("read", "k1")
    check = r.register_script(RATE_LIMIT)
    assert float(check(keys=[state], args=["10.0", "1"])) == 0  # one request per 10 s
    assert 0 < r.pttl(state) <= 10_001
    assert 0 < float(check(keys=[state], args=["10.0", "1"])) <= 10.0
    assert float(check(keys=[K.rate_limit("read", "k2")], args=["10.0", "1"])) == 0


def test_a_cart_is_read_as_its_newest_anchors_and_filters_all_its_items(
        serve: Serve, r: redis.Redis) -> None:
    """Carts are sorted sets by time, read whole (the worker keeps the newest cart_max):
    complements start from the newest anchors while every item in it stays filtered."""
    comp = {"k": "comp"}
    for size in (3, 36):
        r.delete(K.popular)
        cart = K.user_cart(f"c{size}")
        r.zadd(cart, {f"c{size}-{k}": float(k) for k in range(size)})  # newest: highest k
        newest, oldest = f"c{size}-{size - 1}", f"c{size}-0"
        r.zadd(K.item_carters(newest), {f"peer{size}": 1.0})
        r.zadd(K.item_carters(oldest), {f"old-peer{size}": 1.0})
        r.zadd(K.user_basket(f"peer{size}"), {newest: 1.0, f"with-new{size}": 2.0, oldest: 3.0})
        r.zadd(K.user_basket(f"old-peer{size}"), {oldest: 1.0, f"with-old{size}": 2.0})
        r.zadd(K.popular, {**{f"c{size}-{k}": 100.0 for k in range(size)}, "pop": 1.0})
        served = ids(serve(comp, popular(), n=50, entity=f"c{size}", context="cart",
                           block_anchors=True))
        assert cart and size  # the cart is the entity's
        if size <= 5:  # a small cart: every item is an anchor
            assert served == [f"with-new{size}", f"with-old{size}", "pop"], served
        else:  # the 5 newest anchors only; the old item's complements are not reached
            assert served == [f"with-new{size}", "pop"], served


def test_distinct_buyers_beyond_the_exact_set_come_from_the_hyperloglog(
        serve: Serve, r: redis.Redis) -> None:
    again = {"k": "again", "exact_max": 2, "min_buyers": 2, "min_rate": 0.3, "max": 10,
             "rebuy": True}
    r.zadd(K.user_bought("b"), {"soap": 1.0, "tv": 2.0})
    for item, buyers in (("soap", 4), ("tv", 9)):  # purchases 10 each
        r.hset(K.item_stats(item), "purchase", 10)
        r.sadd(K.item_buyers(item), "e0", "e1")  # full at exact_max
        r.pfadd(K.item_buyers_hll(item), *[f"e{k}" for k in range(buyers)])
    # repeat rate (purchases - buyers) / purchases: soap 0.6, tv 0.1 (under min_rate)
    items = serve(again, entity="b")
    assert [(item[3], round(float(item[2]), 6)) for item in items] == [("soap", 0.6)]


def test_tracking_limits_charge_every_bucket_or_none(r: redis.Redis) -> None:
    script = r.register_script(RATE_LIMIT_EVENTS)
    a, b = K.rate_limit("ent", "a"), K.rate_limit("addr", "b")

    def charge(*buckets: tuple[str, float, float, int]) -> tuple[float, int]:
        spec = orjson.dumps([[interval, burst, cost] for _, interval, burst, cost in buckets])
        wait, index = script(keys=[key for key, *_ in buckets], args=[spec])
        return float(wait), int(index)

    # an idle bucket admits one batch larger than its burst, then refuses
    assert charge((a, 10.0, 2, 5)) == (0.0, 0)
    wait, index = charge((b, 10.0, 100, 1), (a, 10.0, 2, 1))
    assert index == 2 and 0 < wait <= 60.0
    assert r.get(b) is None  # refused by a: b was not charged either
    assert charge((b, 10.0, 100, 1)) == (0.0, 0)
    assert 0 < r.pttl(b) <= 10_001


def test_serving_rows_and_item_hashes_give_the_same_reply(settings: Settings,
                                                          r: redis.Redis) -> None:
    """With the catalog columns whole, a candidate's fields come from its serving row
    (``stream.catalog_columns.serve_row``), else from its hash: the same reply, through
    the worker's own catalog writes; stock and deletion count from the write on."""
    items = [CatalogRecord(item_id="a", updated_at=1.0, name="A\x1fz", price=4.5,
                           currency="EUR", category="shoes.kids"),
             CatalogRecord(item_id="b", updated_at=1.0, in_stock=False, name="B"),
             CatalogRecord(item_id="c", updated_at=1.0, deleted=True),
             CatalogRecord(item_id="d", updated_at=1.0, category="odd\x1f", name="D"),
             CatalogRecord(item_id="e", updated_at=1.0, price=2.0)]

    async def write(records: list[CatalogRecord]) -> None:
        client = async_client(settings, decode_responses=True)
        await RedisWriter(client, K, dedupe_ttl_s=60).apply_catalog(records)
        await client.aclose()

    asyncio.run(write(items))
    r.zadd(K.popular, {item: 10 - k for k, item in enumerate("abcdefg")})
    rows = {"rows": [K.item_rows, K.columns_ready, COLUMNS_VERSION]}

    def both(**fields: Any) -> list[Any]:
        r.set(K.columns_ready, COLUMNS_VERSION)
        with_rows = serve_reply(settings, [popular()], **rows, **fields)
        r.set(K.columns_ready, "3")  # whole before the rows existed: the hashes
        assert serve_reply(settings, [popular()], **rows, **fields) == with_rows
        return with_rows

    reply = both()
    first = 7 + 2 * int(reply[5])
    chosen = {reply[at + 3]: reply[at + 4:at + 8]
              for at in range(first, first + 11 * int(reply[6]), 11)}
    assert chosen == {"a": ["A\x1fz", "4.5", "EUR", "shoes.kids"],
                      "d": ["D", None, None, "odd\x1f"], "e": [None, "2.0", None, None],
                      "f": [None, None, None, None], "g": [None, None, None, None]}
    assert r.hget(K.item_rows, "d") == "h"  # its hash is read instead
    both(catalog=True)
    asyncio.run(write([CatalogRecord(item_id="a", updated_at=2.0, in_stock=False)]))
    reply = both()
    assert "a" not in reply[first:first + 11 * int(reply[6])]
