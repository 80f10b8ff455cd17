"""The serving rules as production runs them: the Lua of ``api.serve_script`` on a real
redis-server, called directly with the JSON request ``api.reader.Reader`` builds.

These rules (valid ids and scores, merging, catalog flags, purchase and stock filters,
the rate limit) exist only in Lua; the HTTP-level tests in ``test_recommend.py`` and
``test_serving.py`` check the same rules through the routes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import orjson
import pytest
import redis

from api.serve_script import RATE_LIMIT, SERVE
from core.limits import MAX_ID_LEN
from core.redis_keys import RedisKeys
from core.settings import Settings

pytestmark = pytest.mark.integration

K = RedisKeys()

#: One chosen item of the reply: link, position, raw score, id, name, price, currency,
#: category, affinity, stored reason (see api.serve_script).
Item = list[Any]
Serve = Callable[..., list[Item]]


@pytest.fixture
def r(settings: Settings) -> Iterator[redis.Redis]:
    """A client of the test's (empty) Redis."""
    client = redis.Redis.from_url(settings.redis_url, decode_responses=True)
    yield client
    client.close()


@pytest.fixture
def serve(r: redis.Redis) -> Serve:
    """Run SERVE with these links (and request fields); the chosen items of the reply."""
    script = r.register_script(SERVE)

    def run(*links: dict[str, Any], n: int = 10, **fields: Any) -> list[Item]:
        request = {"n": n, "page": n + 20, "scan": 30 * n + 200, "v": K.model_current,
                   "un": K.unavailable, "meta": K.split("item_meta"), "catalog": False,
                   "ex": [], "src": list(links), **fields}
        reply = script(args=[orjson.dumps(request)])
        assert reply[0] == "ok", reply
        first = 6 + 2 * int(reply[5])
        return [reply[at:at + 10] for at in range(first, len(reply), 10)]

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


def test_prepared_json_lists_keep_valid_entries_best_first(serve: Serve,
                                                            r: redis.Redis) -> None:
    doc = {"v": "m1", "ts": 1.0, "items": [
        ["a", 0.5], ["b", 0.9], ["", 1], ["x" * (MAX_ID_LEN + 1), 1], [3, 1], ["c", "nan"],
        ["d"], ["e", None], {"item_id": "f", "score": 0.7}, ["g", True]]}
    r.set(K.user_recs("u"), orjson.dumps(doc))
    r.set(K.user_recs("bare"), orjson.dumps([["a", 1], ["b", 2]]))
    link = {"k": "json", "key": K.user_recs("u")}
    assert [(item[3], float(item[2])) for item in serve(link)] == [
        ("b", 0.9), ("f", 0.7), ("a", 0.5)]
    assert ids(serve({"k": "json", "key": K.user_recs("bare")})) == ["b", "a"]
    for n, bad in enumerate(("", "not json", "{}", '{"items": 3}', "[1, 2]")):
        r.set(K.user_recs(f"bad{n}"), bad)
        assert serve({"k": "json", "key": K.user_recs(f"bad{n}")}) == [], bad
    assert serve({"k": "json", "key": K.user_recs("absent")}) == []


def test_session_merges_cooccurrence_of_recent_items_ties_by_id(serve: Serve,
                                                                r: redis.Redis) -> None:
    r.set(K.user_recent("s"), orjson.dumps(["s1", "s2", "s1", "", 3, "s3"]))
    r.zadd(K.item_cooc("s1"), {"x": 3, "y": 1, "b": 1})
    r.zadd(K.item_cooc("s2"), {"y": 3, "a": 1})
    r.zadd(K.item_cooc("s3"), {"late": 100})
    link = {"k": "session", "key": K.user_recent("s"), "cooc": K.split("item_cooc"),
            "items": 2}  # only the two newest distinct recent items count
    items = serve(link)
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
    # over the script's whole-set read limit: asked per candidate instead
    r.zadd(K.user_bought("large"), {"i2": 1.0, **{f"other{k}": 2.0 + k for k in range(100)}})
    for who in ("small", "large"):
        assert ids(serve(popular(), ex=["i3"], bought=K.user_bought(who))) == [
            "i0", "i4", "i5", "i6", "i7"], who
    assert ids(serve(popular(), catalog=True)) == ["i0"]
    assert ids(serve(popular(), n=2)) == ["i0", "i2"]


def test_chain_links_fill_in_order_without_repeating_an_item(r: redis.Redis) -> None:
    r.set(K.user_recs("u"), orjson.dumps({"v": "m", "items": [["a", 0.9], ["b", 0.5]]}))
    r.zadd(K.popular, {"b": 9, "p": 5, "q": 1})
    r.set(K.model_current, "m7")
    script = r.register_script(SERVE)
    request = {"n": 3, "page": 23, "scan": 300, "v": K.model_current, "un": K.unavailable,
               "meta": K.split("item_meta"), "catalog": False, "ex": [],
               "src": [{"k": "json", "key": K.user_recs("u")}, {"k": "none"}, popular()]}
    reply = script(args=[orjson.dumps(request)])
    assert reply[:6] == ["ok", "m7", None, "0", "0", 3]
    assert [float(x) for x in reply[6:12]] == [0.5, 0.9, 0.0, 0.0, 1.0, 9.0]  # lo, hi
    assert [(item[0], item[3]) for item in (reply[12:22], reply[22:32], reply[32:42])] == [
        (1, "a"), (1, "b"), (3, "p")]


def test_rate_limit_stops_the_request_before_anything_is_read(r: redis.Redis) -> None:
    state = K.rate_limit("read", "k1")
    limit = [state, 10.0, 1]  # one request per 10 s
    r.zadd(K.popular, {"p": 1})
    script = r.register_script(SERVE)
    request = {"n": 1, "page": 21, "scan": 230, "v": K.model_current, "un": K.unavailable,
               "meta": K.split("item_meta"), "catalog": False, "ex": [], "rl": limit,
               "src": [popular()]}
    replies = [script(args=[orjson.dumps(request)]) for _ in range(2)]
    assert [reply[0] for reply in replies] == ["ok", "limited"]
    assert replies[1] == ["limited", replies[1][1]] and 0 < float(replies[1][1]) <= 10.0
    assert 0 < r.pttl(state) <= 10_001
    check = r.register_script(RATE_LIMIT)
    assert float(check(keys=[K.rate_limit("read", "k2")], args=["10.0", "1"])) == 0
    assert float(check(keys=[state], args=["10.0", "1"])) > 0
