"""The data of ``streamrec bench serve`` (:mod:`streamrec.bench.serve`): the lists, catalog
and stock it loads into Redis as the worker writes them, and the pieces its live writer
(:mod:`streamrec.bench.live_writes`) rewrites while it measures — one place for the
format, keys and write commands of both.
"""

from __future__ import annotations

import random
import time
from itertools import accumulate
from typing import Any

#: How the reasons of a blended personal list are drawn: mostly the personal source.
REASON_WEIGHTS = {"personal": 0.7, "session": 0.1, "similar": 0.1, "popular": 0.1}
#: Draws per personal list: enough distinct items for 100 after dropping repeats.
_DRAWS = 140


class Shop:
    """The bench shop's popularity and reasons, computed once: items follow a power law,
    like real shops (``cum`` makes each draw a bisection, not a pass over the catalog)."""

    def __init__(self, items: int) -> None:
        from recommender.refresh import REASONS

        self.items = items
        self.weights = [1.0 / (i + 1) ** 0.8 for i in range(items)]
        self.cum = list(accumulate(self.weights))
        self.reasons = [REASONS[s] for s in REASON_WEIGHTS]
        self.reason_cum = list(accumulate(REASON_WEIGHTS.values()))

    def item(self, rnd: random.Random) -> int:
        """One item drawn by popularity (what a shopper's event is about)."""
        return rnd.choices(range(self.items), cum_weights=self.cum)[0]

    def personal_list(self, rnd: random.Random) -> tuple[list[str], bytes]:
        """A shopper's 100-item personal list in the worker's blended format
        (``stream.processor``: ``[id, score, reason]`` per entry): its ids and the value
        the worker SETs at ``RedisKeys.user_recs``."""
        from stream.redis_writer import dumps_list

        chosen = rnd.choices(range(self.items), cum_weights=self.cum, k=_DRAWS)
        ids = [f"sku-{c}" for c in list(dict.fromkeys(chosen))[:100]]
        return ids, dumps_list(
            "vbench", ids, [1.0 - j / 200 for j in range(len(ids))], ts=time.time(),
            reasons=rnd.choices(self.reasons, cum_weights=self.reason_cum, k=len(ids)))

    def popular_scores(self) -> dict[str, float]:
        """The popular set's scores at load time (the live writer adds its events)."""
        return {f"sku-{i}": round(w * 10000, 3) for i, w in enumerate(self.weights)}

    def write_trending(self, pipe: Any, rnd: random.Random,
                       items: set[int] | None = None) -> None:
        """Queue a write of fresh scores to the trending set: every third item (what the
        loader writes), or those of ``items`` (a batch's) among them."""
        from core.redis_keys import RedisKeys

        chosen = sorted(items) if items is not None else range(self.items)
        scores = {f"sku-{i}": rnd.random() * 100 for i in chosen if i % 3 == 0}
        if scores:
            pipe.zadd(RedisKeys().trending, scores)


def _load_catalog(pipe: Any, rnd: random.Random, items: int) -> None:
    from core.redis_keys import RedisKeys
    from stream.catalog_columns import serve_row

    k = RedisKeys()
    for i in range(items):
        in_stock = rnd.random() > 0.05
        fields: dict[Any, Any] = {"name": f"Item {i}", "price": repr(round(rnd.uniform(1, 200), 2)),
                                  "currency": "EUR", "category": f"c{i % 40}"}
        pipe.hset(k.item_meta(f"sku-{i}"), mapping={**fields, "in_stock": str(int(in_stock)),
                  "deleted": "0", "properties": "{}", "updated_at": repr(time.time())})
        # the catalog columns (stream.catalog_columns), as the worker writes them
        pipe.hset(k.item_categories, f"sku-{i}", f"c{i % 40}")
        pipe.sadd(k.category_items(f"c{i % 40}"), f"sku-{i}")
        pipe.hset(k.item_prices, f"sku-{i}", fields["price"])
        pipe.hset(k.item_rows, f"sku-{i}", serve_row(in_stock=in_stock, deleted=False, **fields))
        if not in_stock:
            pipe.sadd(k.unavailable, f"sku-{i}")
        if i % 500 == 499:
            pipe.execute()
    pipe.execute()


def load_data(redis_url: str, users: int, items: int, seed: int = 1) -> None:
    """Realistic prepared lists, catalog and stock, written as the worker writes them
    (personal lists in the blended format of ``stream.processor``: ``[id, score, reason]``)."""
    import orjson
    import redis

    from core.merch_keys import COLUMNS_VERSION
    from core.redis_keys import RedisKeys

    k = RedisKeys()
    rnd = random.Random(seed)
    shop = Shop(items)
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    pipe = client.pipeline(transaction=False)
    pipe.zadd(k.popular, shop.popular_scores())
    shop.write_trending(pipe, rnd)
    pipe.set(k.trending_epoch, repr(float(int(time.time()))))
    pipe.set(k.model_current, "vbench")
    pipe.set(k.columns_ready, COLUMNS_VERSION)
    _load_catalog(pipe, rnd, items)
    for u in range(users):
        ids, body = shop.personal_list(rnd)
        pipe.set(k.user_recs(f"u{u}"), body)
        pipe.zadd(k.user_bought(f"u{u}"),
                  {f"sku-{rnd.randrange(items)}": float(j) for j in range(3)})
        pipe.set(k.user_recent(f"u{u}"), orjson.dumps(ids[:5]))
        if u % 500 == 499:
            pipe.execute()
    pipe.execute()
    client.close()


#: ``--experiment``: a typical holdout experiment over every context.
BENCH_VARIANTS: list[dict[str, Any]] = [
    {"name": "control", "weight": 0.1, "serve": "holdout"},
    {"name": "treatment", "weight": 0.9, "serve": "personalized"}]


def define_experiment(redis_url: str, users: int) -> None:
    """A running experiment (:data:`BENCH_VARIANTS`) with every bench user already
    exposed (confirmed assignments, as after their first answer; the bench has no Kafka
    to take exposure records)."""
    import orjson
    import redis

    from core.redis_keys import RedisKeys
    from recommender.experiments import assign_variant

    k = RedisKeys()
    names = [v["name"] for v in BENCH_VARIANTS]
    weights = [v["weight"] for v in BENCH_VARIANTS]
    doc = {"experiment_id": "bench", "variants": BENCH_VARIANTS, "status": "running",
           "contexts": None,
           "created_at": time.time(), "started_at": time.time(), "stopped_at": None,
           "run": "bench"}
    client = redis.Redis.from_url(redis_url)
    client.hset(k.experiments, "bench", orjson.dumps(doc))
    client.hset(k.experiment_assign("bench"), mapping={
        f"u{u}": assign_variant("bench", f"u{u}", names, weights) for u in range(users)})
    client.close()
