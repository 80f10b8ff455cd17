"""The full retrain with ``require_catalog``: items the catalog lacks get no model row and
no similar list, however many of them clients named (issue 12, bounded state)."""

from __future__ import annotations

import time

import orjson
import pytest
import redis
from kafka import KafkaProducer

from core import kafka_tools
from core.redis_keys import RedisKeys
from core.settings import Settings
from stream.retrain import train_and_publish

pytestmark = [pytest.mark.integration, pytest.mark.broker]
K = RedisKeys()
CATALOG = [f"sku-{i}" for i in range(6)]


def produce_views(settings: Settings) -> None:
    """12 shoppers viewing catalog items, and 300 forged ids viewing random items."""
    producer = KafkaProducer(**kafka_tools.client_options(settings), acks="all")
    now = time.time()
    events = [(f"u{u}", CATALOG[(u + k) % len(CATALOG)]) for u in range(12) for k in range(4)]
    events += [(f"forged-{i}", f"junk-{i}") for i in range(300)]
    events += [("u0", "junk-shared"), ("u1", "junk-shared")]
    for n, (entity, item) in enumerate(events):
        value = orjson.dumps({"v": 1, "events": [{
            "event_id": f"e{n}", "type": "view", "anonymous_id": entity, "item_id": item,
            "ts": now, "received_at": now}]})
        producer.send(settings.topic_events, key=entity.encode(), value=value)
    producer.flush()
    producer.close()


def test_items_the_catalog_lacks_get_no_model_row_nor_similar_list(settings: Settings) -> None:
    s = settings.model_copy(update={"require_catalog": True, "retrain_min_events": 1})
    kafka_tools.create_topics(s)
    client = redis.Redis.from_url(s.redis_url)
    try:
        for item in CATALOG:
            client.hset(K.item_meta(item), mapping={"name": item, "in_stock": 1})
        produce_views(s)
        result = train_and_publish(s, wait_live_s=0)
        assert result.n_items == len(CATALOG)
        assert result.n_users == 12  # the forged ids had nothing but unknown items
        items = client.scan_iter(K.pattern("item_similar"))
        assert sorted(k.decode().rsplit(":", 2)[-2] for k in items) == CATALOG
        for item in CATALOG:
            listed = orjson.loads(client.get(K.item_similar(item)) or b"{}")
            assert listed["items"] and all(i[0] in CATALOG for i in listed["items"])
            # written when: the age an explain trace gives the similar source
            assert listed["v"] == result.version and time.time() - 120 < listed["ts"]
    finally:
        client.close()
