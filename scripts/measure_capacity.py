"""Bytes per user, per item and per event in Redis (and per entity in the worker's table),
and the serve script's cost for a 10-item vs a 10,000-item cart.

Starts its own throwaway redis-server, drives the worker's real ``EventProcessor`` (no
model: lists are the session lists; with a model each entity also holds its ~2.5 KB
personal list) with a synthetic shop — ``USERS`` users (a quarter anonymous) making
``EVENTS_PER_USER`` events each (75 % views, 15 % cart adds, 5 % purchases, 5 %
impressions of 10 items) over ``ITEMS`` catalogued items with a Zipf-like taste — and
reports, as JSON:

* ``per_user_bytes``: ``MEMORY USAGE`` of every ``u:{entity}:*`` key, per entity;
* ``per_item_bytes``: every key of the item bucket (``i:{I}:{item}:*``), its catalog
  hash in the shared slot, plus the item's popular and trending entries, per item;
* ``per_event_bytes``: the dedupe sets (``seen:*``; per-slot markers and the outbox are
  dropped after each batch), per event (they expire after ``dedupe_ttl_s``);
* ``used_memory_per_event``: INFO's ``used_memory`` growth over the whole run, per event;
* ``table_value_bytes``: mean JSON size of an entity's history (the Faust table value,
  as its changelog topic holds it), ``table_python_bytes`` its size as Python objects in
  a worker's memory (the table's store is in memory);
* ``cart_serve_us``: median µs of one cart-context list (n=10: the reads of
  ``api.gather`` and the ``SERVE`` call, round trips included) with a 10-, a 100- and a
  10,000-item cart.

Run: ``OPENBLAS_NUM_THREADS=1 .venv/bin/python scripts/measure_capacity.py`` (env ``USERS``
2000, ``ITEMS`` 2000, ``EVENTS_PER_USER`` 20).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson
import redis
import redis.asyncio as aioredis

sys.path.insert(0, ".")
from api.list_query import ListQuery  # noqa: E402
from api.metrics import Metrics  # noqa: E402
from api.ranking import user_chain  # noqa: E402
from api.reader import Reader  # noqa: E402
from core.redis_keys import RedisKeys  # noqa: E402
from core.settings import Settings  # noqa: E402
from schemas import CatalogRecord, TopicEvent  # noqa: E402
from stream.bounds import StateBounds  # noqa: E402
from stream.history_store import DictStore  # noqa: E402
from stream.processor import EventProcessor, ProcessorConfig  # noqa: E402
from stream.redis_writer import RedisWriter  # noqa: E402
from streamrec.stack.servers import start_redis  # noqa: E402

K = RedisKeys()
USERS = int(os.environ.get("USERS", "2000"))
ITEMS = int(os.environ.get("ITEMS", "2000"))
PER_USER = int(os.environ.get("EVENTS_PER_USER", "20"))


def shop_events(rng: random.Random, now: float) -> list[TopicEvent]:
    """The synthetic traffic, in time order."""
    events = []
    for u in range(USERS):
        who = {"anonymous_id": f"anon-{u:06d}"} if u % 4 == 0 else {"user_id": f"user-{u:06d}"}
        for k in range(PER_USER):
            item = f"sku-{min(int(rng.paretovariate(1.2)) - 1, ITEMS - 1):06d}"
            roll = rng.random()
            extra: dict[str, Any] = {"item_id": item}
            kind = "view"
            if roll > 0.95:
                kind, extra = "impression", {"item_ids": [
                    f"sku-{rng.randrange(ITEMS):06d}" for _ in range(10)]}
            elif roll > 0.90:
                kind = "purchase"
            elif roll > 0.75:
                kind = "add_to_cart"
            ts = now - 3600 + rng.uniform(0, 3600)
            events.append(TopicEvent(event_id=f"{u}-{k}", type=kind, ts=ts, received_at=ts,
                                     **who, **extra))
    events.sort(key=lambda e: e.ts)
    return events


def deep_size(value: Any) -> int:
    """Bytes of a JSON-like Python value with everything it holds."""
    size = sys.getsizeof(value)
    if isinstance(value, dict):
        size += sum(deep_size(k) + deep_size(v) for k, v in value.items())
    elif isinstance(value, list | tuple):
        size += sum(deep_size(v) for v in value)
    return size


def usage(client: redis.Redis, pattern: str) -> tuple[int, int]:
    """(keys, bytes) of the keys matching ``pattern``."""
    n = total = 0
    for key in client.scan_iter(match=pattern, count=1000):
        n += 1
        total += int(client.memory_usage(key, samples=0) or 0)
    return n, total


async def fill(url: str, events: list[TopicEvent], bounds: StateBounds) -> DictStore:
    """Catalog, then the events through the worker's processor."""
    client = aioredis.Redis.from_url(url)
    writer = RedisWriter(client, K, dedupe_ttl_s=7 * 86400, bounds=bounds)
    now = time.time()
    await writer.apply_catalog([CatalogRecord(item_id=f"sku-{i:06d}", name=f"Item {i}",
                                              price=9.99, category="c", updated_at=now)
                                for i in range(ITEMS)])
    proc = EventProcessor(writer, K, ProcessorConfig(bounds=bounds), lambda: None)
    store = DictStore()
    for start in range(0, len(events), 2000):
        await proc.process([(e, 0) for e in events[start:start + 2000]], store)
    await client.aclose()
    return store


def cart_timing(client: redis.Redis, url: str) -> dict[str, Any]:
    """Median µs of a cart-context list for carts of 10, 100 and 10,000 items (sorted
    sets written directly, as an untrimmed cart would be): rounds interleave the sizes so
    a busy machine slows them alike; the best round's medians are kept."""
    settings = Settings(redis_url=url)
    queries = {}
    for size in (10, 100, 10_000):
        entity = f"cart-{size}"
        client.zadd(K.user_cart(entity), {f"sku-{i % ITEMS:06d}-{i}": float(i)
                                          for i in range(size)})
        _, chain = user_chain("cart", None)
        queries[size] = ListQuery(chain, 10, entity=entity, context="cart")

    async def timed() -> dict[int, float]:
        reader = Reader(aioredis.Redis.from_url(url, decode_responses=True), settings,
                        Metrics())
        best: dict[int, float] = {}
        for _ in range(5):
            for size, query in queries.items():
                times = []
                for _ in range(200):
                    t = time.perf_counter()
                    await reader.read(query)
                    times.append(time.perf_counter() - t)
                median = statistics.median(times) * 1e6
                best[size] = min(best.get(size, median), median)
        reader.close()
        return best

    return {f"{size}_items_us": round(us, 1) for size, us in asyncio.run(timed()).items()}


def main() -> None:
    """Measure and print the JSON report."""
    rng = random.Random(12)
    events = shop_events(rng, time.time())
    bounds = StateBounds()
    with tempfile.TemporaryDirectory() as tmp:
        srv = start_redis(Path(tmp))
        url = f"redis://{srv.address}/0"
        client = redis.Redis.from_url(url)
        try:
            before = int(client.info("memory")["used_memory"])
            store = asyncio.run(fill(url, events, bounds))
            after = int(client.info("memory")["used_memory"])
            entities = len(store.data)
            users = usage(client, K.entity_pattern)
            items = usage(client, K.item_pattern())
            meta = usage(client, K.pattern("item_meta"))
            seen = usage(client, K.pattern("seen", "*"))
            ranked = usage(client, K.popular)[1] + usage(client, K.trending)[1]
            table = [len(orjson.dumps(v)) for v in store.data.values()]
            report = {
                "users": USERS, "entities": entities, "items": ITEMS, "events": len(events),
                "per_user_bytes": round(users[1] / entities),
                "per_item_bytes": round((items[1] + meta[1] + ranked) / ITEMS),
                "per_event_bytes": round(seen[1] / len(events)),
                "used_memory_per_event": round((after - before) / len(events)),
                "table_value_bytes": round(statistics.mean(table)),
                "table_python_bytes": round(statistics.mean(
                    deep_size(v) for v in store.data.values())),
                "keys": {"u": users[0], "i": items[0], "seen": seen[0]},
                "cart_serve_us": cart_timing(client, url),
            }
        finally:
            client.close()
            srv.stop()
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
