"""The serve script's filters read two ways -- a page of candidates at once on the catalog
columns (``stream.catalog_columns``), or each candidate's item hash -- and both must
choose the same items, for every kind of link, with the rules written in Python."""

from __future__ import annotations

import random
from typing import Any

import orjson
import pytest
import redis

from api.filters import Merch, category_matches, script_fields
from core.limits import CATEGORY_INTERSECT_MAX, id_problem
from core.merch_keys import COLUMNS_VERSION
from core.redis_keys import RedisKeys
from core.settings import Settings
from stream.catalog_columns import category_prefixes, serve_row
from tests.integration.api.test_serve_script import serve_reply

pytestmark = pytest.mark.integration

K = RedisKeys()
CATEGORIES = ["a", "a.x", "a.y.z", "ab", "b", "b.a", None]
COLUMNS = (K.item_categories, K.item_prices, K.columns_ready, K.split("category_items"),
           K.item_price_index, COLUMNS_VERSION)


@pytest.fixture
def settings(either_redis: Settings) -> Settings:
    """On one Redis, then on a Redis Cluster (the columns and category sets share the
    shared slot with the item hashes and popular: ``core.redis_keys``)."""
    return either_redis



def catalog(r: redis.Redis, rnd: random.Random, count: int) -> dict[str, dict[str, Any]]:
    """``count`` items, a few unknown to the catalog, some out of stock or deleted."""
    items: dict[str, dict[str, Any]] = {}
    for i in range(count):
        item_id = f"i{i}"
        if rnd.random() < 0.1:
            continue  # not in the catalog
        meta: dict[str, Any] = {"in_stock": "0" if rnd.random() < 0.1 else "1", "deleted": "0"}
        category = rnd.choice(CATEGORIES)
        if category is not None:
            meta["category"] = category
            r.hset(K.item_categories, item_id, category)
            for prefix in category_prefixes(category):
                r.sadd(K.category_items(prefix), item_id)
        if rnd.random() < 0.85:
            meta["price"] = repr(round(rnd.uniform(0, 100), 2))
            r.hset(K.item_prices, item_id, meta["price"])
            r.zadd(K.item_price_index, {item_id: float(meta["price"])})
        r.hset(K.item_meta(item_id), mapping=meta)
        r.hset(K.item_rows, item_id, serve_row(
            in_stock=meta["in_stock"] == "1", deleted=False, price=meta.get("price", ""),
            category=meta.get("category", "")))
        if meta["in_stock"] == "0":
            r.sadd(K.unavailable, item_id)
        items[item_id] = meta
    return items


def expected(items: dict[str, dict[str, Any]], order: list[str], merch: Merch, n: int,
             bought: set[str]) -> list[str]:
    """The serve script's rules in Python for one chain read in ``order``."""
    out: list[str] = []
    per_category: dict[str, int] = {}
    for item_id in dict.fromkeys(order):
        if id_problem(item_id) or item_id in bought:
            continue
        meta = items.get(item_id, {"in_stock": "1"})  # unknown items are servable
        if meta["in_stock"] == "0":
            continue
        category, price = meta.get("category"), meta.get("price")
        if merch.categories and not category_matches(category, merch.categories):
            continue
        if merch.price_min is not None or merch.price_max is not None:
            if price is None:
                continue
            if merch.price_min is not None and float(price) < merch.price_min:
                continue
            if merch.price_max is not None and float(price) > merch.price_max:
                continue
        if merch.cap and category:
            if per_category.get(category, 0) >= merch.cap:
                continue
            per_category[category] = per_category.get(category, 0) + 1
        out.append(item_id)
        if len(out) == n:
            break
    return out


@pytest.mark.parametrize("big_sets", [False, True], ids=["intersect", "scan"])
@pytest.mark.parametrize("seed", range(4))
def test_both_ways_of_filtering_choose_what_the_rules_say(r: redis.Redis, settings: Settings,
                                                         seed: int, big_sets: bool) -> None:
    rnd = random.Random(seed)
    items = catalog(r, rnd, 400)
    if big_sets:  # categories over CATEGORY_INTERSECT_MAX items: sorted sets are scanned
        for category in ("a", "a.y", "ab", "b"):
            r.sadd(K.category_items(category),
                   *(f"pad{i}" for i in range(CATEGORY_INTERSECT_MAX + 1)))
    personal = rnd.sample(sorted(items) + ["ghost", "i 1", "x\x01y"], 60)
    r.set(K.user_recs("u"), orjson.dumps({"v": "m", "items": [
        [i, round(1 - j / 100, 4), "personalized"] for j, i in enumerate(personal)]}))
    r.zadd(K.popular, {f"i{i}": 1000 - i for i in range(400)})
    r.zadd(K.user_bought("u"), {i: 1 for i in rnd.sample(sorted(items), 20)})
    bought = set(r.zrange(K.user_bought("u"), 0, -1))
    for _ in range(25):
        low = rnd.uniform(0, 60)
        merch = Merch(categories=tuple(rnd.sample(["a", "b", "a.y", "ab"], rnd.randint(1, 2)))
                      if rnd.random() < 0.7 else (),
                      price_min=low if rnd.random() < 0.5 else None,
                      price_max=low + rnd.uniform(0, 50) if rnd.random() < 0.5 else None,
                      cap=rnd.choice([None, 1, 2]))
        n = rnd.choice([3, 10, 25])
        answers = []
        for ready in (True, False):
            if ready:
                r.set(K.columns_ready, COLUMNS_VERSION)
            else:
                r.delete(K.columns_ready)
            fields = {"page": 3 * n + 20, **script_fields(merch, 0, 30 * n + 200, 0, COLUMNS)}
            reply = serve_reply(settings, [{"k": "user_recs"}, {"k": "zset", "key": K.popular}],
                                n=n, entity="u", **fields)
            first = 7 + 2 * int(reply[5])
            answers.append([reply[at + 3] for at in range(first, first + 11 * int(reply[6]), 11)])
        assert answers[0] == answers[1], merch
        assert answers[0] == expected(items, [*personal, *(f"i{i}" for i in range(400))],
                                      merch, n, bought), merch


def chosen(reply: list[Any]) -> list[tuple[str, int, str]]:
    """``(id, position, raw score)`` of each item a ``SERVE`` reply chose."""
    first = 7 + 2 * int(reply[5])
    return [(reply[at + 3], int(reply[at + 1]), reply[at + 2])
            for at in range(first, first + 11 * int(reply[6]), 11)]


@pytest.mark.parametrize("seed", range(3))
def test_a_price_band_past_the_budget_reads_as_a_whole_scan_would(
        r: redis.Redis, settings: Settings, seed: int) -> None:
    """With a budget far too small for popular, a price filter reads its band from the
    price index: the same items, positions and scores as a scan without a budget, and the
    same with a trace; ties in popular keep ZREVRANGE's order."""
    rnd = random.Random(seed)
    items = catalog(r, rnd, 400)
    r.zadd(K.popular, {f"i{i}": 1000 - i // 3 for i in range(400)})
    order = list(r.zrevrange(K.popular, 0, -1))
    rank = {item_id: at for at, item_id in enumerate(order)}
    r.zadd(K.user_bought("u"), {i: 1 for i in rnd.sample(sorted(items), 20)})
    bought = set(r.zrange(K.user_bought("u"), 0, -1))
    r.set(K.columns_ready, COLUMNS_VERSION)
    for _ in range(12):
        low = rnd.uniform(0, 80)
        merch = Merch(categories=("a",) if rnd.random() < 0.3 else (),
                      price_min=low if rnd.random() < 0.7 else None,
                      price_max=low + rnd.uniform(0, 30), cap=rnd.choice([None, 2]))
        n = rnd.choice([3, 10])
        want = expected(items, order, merch, n, bought)
        answers = []
        for explain in (False, True):
            fields = {**script_fields(merch, 0, 0, 0, COLUMNS), "scan": 25}
            if explain:
                fields.update(x=True, **{"del": K.deleted})
            answers.append(chosen(serve_reply(settings, [{"k": "zset", "key": K.popular}],
                                              n=n, entity="u", **fields)))
        assert [i for i, _, _ in answers[0]] == want, merch
        if not merch.categories:  # (a category's ZINTER counts within the category)
            assert [pos for _, pos, _ in answers[0]] == [rank[i] for i in want], merch
        assert answers[1] == answers[0], merch
