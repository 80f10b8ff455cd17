"""How long a full retrain of 1,000,000 interactions takes, from the log to a live version.

``streamrec bench ingest --burst`` produces the interactions straight to a topic of their
own (API-shaped envelopes, one message per partition and 500 events, as ``POST
/v1/events`` writes them): ``--train-events`` events (1,000,000) of ``--train-shoppers``
shoppers (100,000) over ``--items`` items (20,000, half of them drawn Zipf-like, half
uniformly), then runs the worker's retrain on it (:func:`stream.retrain.train_and_publish`
with every core, as the worker's niced retrain process does) and reports its stages:
reading and decoding the log, building the matrix, fitting ALS, the similar lists, the
swap (the version is live: what the target counts), and the plain lists of users without
any, written after the swap.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import numpy as np
import orjson

from core.kafka_tools import partition_of
from core.settings import Settings

#: Events per produced request, as the API's largest batch.
CHUNK = 500
#: Longest the timed retrain waits for a running one to release the lock (seconds).
LOCK_WAIT_S = 300.0


def interactions(n: int, shoppers: int, items: int, seed: int = 11
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``n`` (shopper, item, type code) triples: shoppers uniform, items half Zipf-like
    (popular head), half uniform; types 16:1:1 view, add_to_cart, purchase."""
    rng = np.random.default_rng(seed)
    users = rng.integers(0, shoppers, n)
    zipf = np.minimum(rng.zipf(1.2, n) - 1, items - 1)
    item = np.where(rng.random(n) < 0.5, zipf, rng.integers(0, items, n))
    kinds = rng.choice(18, n)
    return users, item, np.where(kinds < 16, 0, kinds - 15)


async def produce_interactions(settings: Settings, topic: str, n: int, *, shoppers: int,
                               items: int) -> float:
    """Write ``n`` synthetic events to ``topic``; seconds it took."""
    from aiokafka import AIOKafkaProducer

    from api.producer import producer_options

    users, item, kind = interactions(n, shoppers, items)
    types = ("view", "add_to_cart", "purchase")
    tag = uuid.uuid4().hex[:6]
    producer = AIOKafkaProducer(**{**producer_options(settings), "linger_ms": 20,
                                   "max_batch_size": 1 << 20, "max_request_size": 8 << 20,
                                   "request_timeout_ms": 60_000})
    await producer.start()
    started = time.perf_counter()
    try:
        pending = []
        now = time.time()
        for start in range(0, n, CHUNK):
            by_part: dict[int, list[dict[str, Any]]] = {}
            for i in range(start, min(start + CHUNK, n)):
                user = f"t{users[i]}"
                by_part.setdefault(partition_of(user.encode(), settings.topic_partitions),
                                   []).append({"event_id": f"train-{tag}-{i}",
                                               "type": types[kind[i]], "user_id": user,
                                               "item_id": f"i{item[i]}", "ts": now,
                                               "received_at": now})
            for part, events in by_part.items():
                pending.append(await producer.send(
                    topic, orjson.dumps({"v": 1, "events": events}),
                    key=events[0]["user_id"].encode(), partition=part))
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return time.perf_counter() - started


def time_retrain(settings: Settings, *, events: int, shoppers: int, items: int
                 ) -> dict[str, Any]:
    """Produce the interactions to a fresh topic and retrain on it; the stages."""
    from core.kafka_tools import create_topics
    from stream.retrain import train_and_publish

    topic = f"bench-train-{uuid.uuid4().hex[:6]}"
    # the size asked for is timed, however small: the worker's minimum
    # (STREAMREC_RETRAIN_MIN_EVENTS) keeps it from publishing a model of a handful of
    # events, not a benchmark from measuring one (it ended in a traceback after the burst)
    local = settings.model_copy(update={"topic_events": topic, "retrain_min_events": 1})
    create_topics(local)
    produce_s = asyncio.run(produce_interactions(local, topic, events, shoppers=shoppers,
                                                 items=items))
    waited_s = wait_for_train_lock(settings)
    result = train_and_publish(local, wait_live_s=0, threads=0)
    report = result.to_dict()
    report.update(topic=topic, produce_seconds=round(produce_s, 2), events_produced=events,
                  waited_for_lock_s=round(waited_s, 1))
    return report


def wait_for_train_lock(settings: Settings, timeout_s: float = LOCK_WAIT_S) -> float:
    """Seconds waited until no retrain holds the lock: a scheduled retrain the stack's
    worker started once the burst was applied may still run (its own process) when the
    timed one would start, which then found the lock taken."""
    from core.redis_client import sync_client
    from core.redis_keys import RedisKeys

    client = sync_client(settings)
    started = time.monotonic()
    try:
        while client.exists(RedisKeys().train_lock) and time.monotonic() - started < timeout_s:
            time.sleep(0.5)
    finally:
        client.close()
    return time.monotonic() - started
