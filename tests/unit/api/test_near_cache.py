"""The near cache's pure parts (api/near_cache.py): which lists a written key drops, which
shared feeds a reply read, the LRU bound, and that a read which saw a report in flight
is not kept."""

from __future__ import annotations

from typing import Any

from api.filters import Merch
from api.list_query import ListQuery
from api.near_cache import (
    ALL,
    EXPERIMENTS,
    IGNORE,
    PROMOTIONS,
    REPORT_LOG,
    Entry,
    KeyMap,
    NearCache,
    cache_key,
    cacheable,
    reached,
    tracked_prefixes,
)
from api.promotions import PROMOTED
from api.ranking import CONTEXT_CHAINS, USER_CHAIN
from core.redis_keys import RedisKeys

K = RedisKeys()
M = KeyMap(K)


def entry(entity: str | None = None, anchor: str | None = None,
          feeds: frozenset[str] = frozenset()) -> Entry:
    return Entry({"items": []}, "personalized", entity, anchor, feeds)


def live(max_entries: int = 10, **kw: Any) -> NearCache:
    cache = NearCache(max_entries, K, **kw)
    cache.live = True
    return cache


def begin(cache: NearCache) -> int:
    """A cacheable read starting, as ``serve`` counts it: the epoch it saw."""
    cache.reading += 1
    return cache.epoch


def test_every_key_serving_reads_is_under_a_tracked_prefix_without_overlaps() -> None:
    prefixes = tracked_prefixes(K)
    read = [K.user_recs("u:1"), K.user_bought("u"), K.user_cart("u"), K.user_recent("u"),
            K.user_basket("u"), K.item_similar("a"), K.item_cooc("a"), K.item_carters("a"),
            K.item_stats("a"), K.item_buyers("a"), K.item_buyers_hll("a"), K.item_meta("a"),
            K.unavailable, K.deleted, K.popular, K.trending, K.trending_epoch, K.new_items,
            K.item_categories, K.item_prices, K.item_rows, K.item_price_index,
            K.columns_ready, K.category_items("c"), K.promotions_rev, K.experiments_rev,
            K.model_current, K.serve_cache_probe]
    assert all(any(key.startswith(p) for p in prefixes) for key in read)
    assert not any(a != b and a.startswith(b) for a in prefixes for b in prefixes)
    assert not any(K.rate_limit("read", "k").startswith(p) for p in prefixes)


def test_a_key_maps_to_what_depends_on_it() -> None:
    assert M.impact(K.user_recs("u:1}:x")) == ("entity", "u:1}:x")
    assert M.impact(K.user_bought("u1")) == ("entity", "u1")
    assert M.impact(K.user_basket("u1")) == ("feed", "complements")
    assert M.impact(K.user_cart_gone("u1")) == (IGNORE, "")
    assert M.impact(K.item_similar("a:b")) == ("anchor", "a:b")
    assert M.impact(K.item_cooc("a")) == ("anchor", "a")
    assert M.impact(K.item_carters("a")) == ("feed", "complements")
    assert M.impact(K.item_stats("a")) == ("feed", "buy_again")
    assert M.impact(K.item_users("a")) == (IGNORE, "")
    assert M.impact(K.item_newcomers("a", 1, 0)) == (IGNORE, "")
    assert M.impact(K.popular) == ("feed", "popular")
    assert M.impact(K.trending_epoch) == ("feed", "trending")
    assert M.impact(K.new_items) == ("feed", "new_items")
    assert M.impact(K.promotions_rev) == (PROMOTIONS, "")
    assert M.impact(K.experiments_rev) == (EXPERIMENTS, "")
    for key in (K.item_meta("a"), K.unavailable, K.item_rows, K.model_current,
                K.category_items("c"), K.item_stats("a").replace("stats", "new"),
                K.user_cart("u").replace("cart", "new")):
        assert M.impact(key) == (ALL, ""), key


def _reply(links: list[int]) -> tuple[list[Any], tuple[int, int]]:
    items = [v for link in links for v in [link] + [None] * 10]
    return [None] * 7 + items, (7, 7 + len(items))


def test_a_link_after_a_full_list_was_not_read() -> None:
    reply, section = _reply([1, 1, 1])
    assert reached(USER_CHAIN, reply, section, 3) == frozenset()
    reply, section = _reply([1, 1, 3])  # session, then popular, were reached
    assert reached(USER_CHAIN, reply, section, 3) == {"cooc", "popular"}
    reply, section = _reply([])
    assert reached(USER_CHAIN, reply, section, 3) == {"cooc", "popular", "new_items"}
    reply, section = _reply([1, 1, 1])  # a promotion at the head reads popular
    assert reached((PROMOTED, *USER_CHAIN), reply, section, 3) == {"popular"}
    # a re-ranked link takes 2n: the one after it is read until 2n items are chosen
    product = CONTEXT_CHAINS["product"]
    reply, section = _reply([1, 1, 1, 1])
    assert "cooc" not in reached(product, reply, section, 3)
    assert reached(product, reply, section, 3) == frozenset()


def test_writes_drop_exactly_the_dependent_lists() -> None:
    cache = live()
    cache.put(("u1",), entry("u1"), cache.epoch)
    cache.put(("u2",), entry("u2", feeds=frozenset({"popular"})), cache.epoch)
    cache.put(("sim",), entry(None, "a"), cache.epoch)
    cache.put(("sess",), entry("u3", feeds=frozenset({"cooc"})), cache.epoch)
    cache.invalidated([K.user_recs("u1")])
    assert cache.get(("u1",)) is None and cache.get(("u2",)) is not None
    cache.invalidated([K.item_cooc("a")])  # the anchor's and every session's
    assert cache.get(("sim",)) is None and cache.get(("sess",)) is None
    cache.invalidated([K.item_users("zz")])
    assert cache.get(("u2",)) is not None
    cache.invalidated([K.popular])
    assert len(cache) == 0


def test_a_catalog_write_or_a_flush_drops_everything_and_refreshes_promotions() -> None:
    seen: list[str] = []
    cache = live(on_change=seen.append)
    cache.put(("a",), entry("u1"), cache.epoch)
    cache.invalidated([K.unavailable])
    assert len(cache) == 0
    cache.put(("a",), entry("u1"), cache.epoch)
    cache.invalidated(None)
    assert len(cache) == 0
    cache.invalidated([K.promotions_rev, K.experiments_rev])
    assert seen == [PROMOTIONS, EXPERIMENTS]


class Flushes:
    """Counts the cache's flushes (the metric's ``inc``)."""

    def __init__(self) -> None:
        self.n = 0

    def inc(self) -> None:
        self.n += 1


class Metrics:
    def __init__(self) -> None:
        self.near_flushes = Flushes()


def test_a_report_of_many_catalog_rows_empties_the_cache_once() -> None:
    metrics, seen = Metrics(), []
    cache = live(metrics=metrics, on_change=seen.append)
    cache.put(("a",), entry("u1"), cache.epoch)
    epoch = cache.epoch
    rows = [K.item_meta(f"i{n}") for n in range(500)]
    cache.invalidated([*rows, K.user_recs("u1"), K.promotions_rev, K.item_meta("j")])
    assert len(cache) == 0 and metrics.near_flushes.n == 1
    assert seen == [PROMOTIONS]  # a copy to refresh still hears of it
    assert not cache.put(("a",), entry("u1"), epoch)  # a read in flight is voided


def test_a_read_that_saw_a_report_of_what_it_depends_on_is_not_kept() -> None:
    cache = live()
    started = begin(cache)
    cache.invalidated([K.user_recs("u1")])
    assert not cache.put(("u1",), entry("u1"), started)
    started = begin(cache)
    cache.invalidated([K.popular])
    assert not cache.put(("p",), entry("u2", feeds=frozenset({"popular"})), started)
    started = begin(cache)
    cache.invalidated([K.item_users("x")])  # no list reads it: reads go on
    assert cache.put(("u1",), entry("u1"), started)


def test_a_read_that_saw_only_reports_of_other_lists_is_kept() -> None:
    cache = live()
    started = begin(cache)
    cache.invalidated([K.user_recs("someone-else"), K.popular])
    assert cache.put(("u1",), entry("u1"), started)
    started = begin(cache)
    cache.invalidated(None)  # a flush: nothing read before it is kept
    assert not cache.put(("u1",), entry("u1"), started)


def test_a_read_older_than_the_reports_remembered_is_not_kept() -> None:
    cache = live()
    started = begin(cache)
    cache.invalidated([K.user_recs(f"other{i}") for i in range(REPORT_LOG + 1)])
    assert not cache.put(("u1",), entry("u1"), started)


def test_a_hit_is_served_only_while_its_entry_is_still_there() -> None:
    cache = live()
    cache.put(("u1",), entry("u1"), cache.epoch)
    got = cache.get(("u1",))
    assert got is not None
    cache.invalidated([K.user_recs("someone-else")])
    assert cache.holds(("u1",), got)
    cache.invalidated([K.user_recs("u1")])
    assert not cache.holds(("u1",), got)


def test_the_lru_bound_holds_and_drops_the_least_recently_used() -> None:
    cache = live(max_entries=2)
    for name in ("a", "b"):
        cache.put((name,), entry(name), cache.epoch)
    assert cache.get(("a",)) is not None  # a is now the most recent
    cache.put(("c",), entry("c"), cache.epoch)
    assert len(cache) == 2 and cache.get(("b",)) is None
    cache.invalidated([K.user_recs("b")])  # its index went with it
    assert len(cache) == 2


def test_nothing_is_kept_or_served_unless_tracking_is_live() -> None:
    cache = NearCache(10, K)
    assert not cache.put(("a",), entry("a"), cache.epoch)
    cache.live = True
    cache.put(("a",), entry("a"), cache.epoch)
    cache.live = False
    assert cache.get(("a",)) is None


def test_explain_answers_are_not_cacheable_and_keys_ignore_rate_and_probe() -> None:
    plain = ListQuery(USER_CHAIN, 10, entity="u1")
    assert cacheable(plain)
    assert not cacheable(ListQuery(USER_CHAIN, 10, merch=Merch(explain=True)))
    probe = ListQuery(USER_CHAIN, 10, entity="u1", probe=True)
    assert cache_key(plain, []) == cache_key(probe, [])
    assert cache_key(plain, []) != cache_key(plain, ["promo"])


def test_with_nothing_kept_and_no_read_in_flight_a_report_only_refreshes_copies() -> None:
    """An API that only ingests: reports of per-event keys cost no parsing, move no
    epoch; the promotions' and experiments' copies still hear of their writes; a read
    in flight (counted by ``serve``) gets the full path."""
    seen: list[str] = []
    cache = live(on_change=seen.append)
    epoch = cache.epoch
    cache.invalidated([K.item_users("x"), K.user_recs("u1"), K.popular, K.promotions_rev,
                       K.unavailable, K.experiments_rev])
    assert cache.epoch == epoch and seen == [PROMOTIONS, EXPERIMENTS]
    started = begin(cache)
    cache.invalidated([K.user_recs("u1")])
    assert cache.epoch > started and not cache.put(("u1",), entry("u1"), started)
