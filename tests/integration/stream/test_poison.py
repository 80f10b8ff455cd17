"""Poison messages produced straight onto the topics: dead-lettered with the reason and the
original bytes, counted in metrics, and the worker keeps going."""

from __future__ import annotations

import base64
import hashlib
import time
from collections.abc import Callable
from typing import Any

import httpx
import orjson
import pytest
import redis
from kafka import KafkaProducer
from kafka.errors import InvalidTimestampError

from core import kafka_tools
from core.redis_keys import RedisKeys
from core.settings import Settings
from tests.polling import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.broker]
K = RedisKeys()

POISON_EVENTS: list[tuple[bytes, str]] = [
    (b"\xff\xfe\x00 not even utf-8", "not JSON"),
    (b"{\"v\": 1, \"events\": [", "not JSON"),
    (b"[1, 2, 3]", "not a JSON object"),
    (b"\"just a string\"", "not a JSON object"),
    (orjson.dumps({"v": 1, "events": [{"type": "view"}]}), "schema"),
    (orjson.dumps({"v": 1, "events": [{"event_id": "x", "type": "teleport", "user_id": "u",
                                        "item_id": "i", "ts": 1.0}]}), "schema"),
    (orjson.dumps({"type": "view", "user_id": "u", "item_id": "i", "timestamp": "yesterday"}),
     "timestamp"),
    (orjson.dumps({"type": "view", "user_id": "u" * 300, "item_id": "i"}), "schema"),
]
POISON_CATALOG: list[tuple[bytes, str]] = [
    (b"<xml/>", "not JSON"),
    (orjson.dumps({"item_id": "", "price": "free"}), "schema"),
]


def good(i: int) -> bytes:
    return orjson.dumps({"v": 1, "events": [{"event_id": f"good-{i}", "type": "view",
                                             "user_id": f"u{i % 5}", "item_id": "ok",
                                             "ts": time.time()}]})


def test_poison_is_dead_lettered_counted_and_never_stops_the_worker(
        settings: Settings, start_worker: Callable[..., Any]) -> None:
    start_worker()
    producer = KafkaProducer(**kafka_tools.client_options(settings), acks="all")
    for i, (raw, _) in enumerate(POISON_EVENTS):
        producer.send(settings.topic_events, key=b"bad", value=raw)
        producer.send(settings.topic_events, key=f"u{i % 5}".encode(), value=good(i))
    for raw, _ in POISON_CATALOG:
        producer.send(settings.topic_catalog, key=b"item", value=raw)
    producer.send(settings.topic_events, key=b"bad", value=None)  # a tombstone-like null
    producer.flush()
    client = redis.Redis.from_url(settings.redis_url)
    n_poison = len(POISON_EVENTS) + len(POISON_CATALOG) + 1
    wait_for(lambda: int(client.hget(K.stats, "dead_lettered") or 0) >= n_poison)

    # Good events interleaved with the poison were all applied.
    wait_for(lambda: int(client.hget(K.item_stats("ok"), "view") or 0) == len(POISON_EVENTS))

    dlq = [orjson.loads(r.value) for r in kafka_tools.read_topic(settings, settings.topic_dlq,
                                                                 timeout_s=30)]
    assert len(dlq) == n_poison
    by_original: dict[bytes | None, dict[str, Any]] = {}
    for rec in dlq:
        assert rec["topic"] in (settings.topic_events, settings.topic_catalog)
        assert isinstance(rec["offset"], int) and rec["reason"]
        if "original_b64" in rec:
            by_original[base64.b64decode(rec["original_b64"])] = rec
        elif rec["original"] is None:
            by_original[None] = rec
        else:
            by_original[rec["original"].encode()] = rec
    for raw, reason in POISON_EVENTS + POISON_CATALOG:
        assert raw in by_original, raw  # the original bytes, byte for byte
        assert reason in by_original[raw]["reason"], (raw, by_original[raw]["reason"])
    assert "empty" in by_original[None]["reason"]

    # Prometheus: the worker's own counter agrees.
    port = next(client.hget(k, "metrics_port") for k in client.scan_iter(K.worker_pattern))
    text = httpx.get(f"http://127.0.0.1:{int(port)}/metrics").text
    counted = sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                  if line.startswith("streamrec_dead_lettered_total{"))
    assert counted == n_poison
    rebuilt = [float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("streamrec_lists_rebuilt_total ")]
    assert rebuilt and rebuilt[0] >= 1  # the good events' shoppers got their lists
    views = [float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
             if line.startswith('streamrec_events_by_type_total{type="view"}')]
    assert views == [len(POISON_EVENTS)]  # by type: the good ones, no poison

    # And the worker still works.
    producer.send(settings.topic_events, key=b"u1", value=good(999))
    producer.flush()
    producer.close()
    wait_for(lambda: int(client.hget(K.item_stats("ok"), "view") or 0)
             == len(POISON_EVENTS) + 1)
    client.close()


def test_a_poison_message_near_the_size_limit_is_dead_lettered_bounded_and_never_crashes(
        settings: Settings, start_worker: Callable[..., Any], tmp_path: Any) -> None:
    """A dead-letter record carrying ~1 MB of original bytes (base64 or escaped) and a
    reason quoting a huge value was larger than a Kafka message may be: the agent
    crashed, its offsets were committed past the unread messages, Redis was wiped and
    rebuilt from offset 0, and the poison after it was never dead-lettered or counted."""
    start_worker()
    producer = KafkaProducer(**kafka_tools.client_options(settings), acks="all")
    size = 900_000
    poisons = [
        b"\xff" * size,  # not UTF-8: base64 makes it 1.2 MB
        b'"' * size,  # not JSON: each quote is escaped to two bytes
        orjson.dumps({"type": "view", "user_id": "bad", "item_id": "i",
                      "timestamp": "t" * size}),  # the reason quotes the value
        orjson.dumps({"v": 1, "events": [{"k" * size: 1}]}),  # the reason names the key
    ]
    for i, raw in enumerate(poisons):
        producer.send(settings.topic_events, key=b"bad", value=raw)
        producer.send(settings.topic_events, key=b"bad", value=orjson.dumps(
            {"v": 1, "events": [{"event_id": f"after-{i}", "type": "view", "user_id": "bad",
                                 "item_id": "after", "ts": time.time()}]}))
    producer.flush()
    producer.close()
    client = redis.Redis.from_url(settings.redis_url)
    wait_for(lambda: int(client.hget(K.item_stats("after"), "view") or 0) == len(poisons))
    wait_for(lambda: int(client.hget(K.stats, "dead_lettered") or 0) == len(poisons))
    client.close()

    records = list(kafka_tools.read_topic(settings, settings.topic_dlq, timeout_s=30))
    assert len(records) == len(poisons)
    for rec, raw in zip(records, poisons, strict=True):
        assert len(rec.value) < 512 * 1024
        dlq = orjson.loads(rec.value)
        assert len(dlq["reason"]) <= 1024
        assert dlq["original_truncated"] is True
        assert dlq["original_size"] == len(raw)
        assert dlq["original_sha256"] == hashlib.sha256(raw).hexdigest()
        kept = (base64.b64decode(dlq["original_b64"]) if "original_b64" in dlq
                else dlq["original"].encode())
        assert raw.startswith(kept) and len(kept) >= 16 * 1024
    log = (tmp_path / "worker-0.log").read_text(errors="replace")
    assert "Crashed" not in log and "wiping" not in log


def test_a_record_dated_far_ahead_cannot_move_the_trending_epoch_into_the_future(
        settings: Settings, start_worker: Callable[..., Any]) -> None:
    """The worker trusts a record's receive time (its ``received_at``, else the Kafka
    record time) for the trending decay. One record produced straight onto the topic
    dated years ahead moved the epoch there, and every genuine event after it weighed
    ``exp(-years / half-life)`` = 0 in trending until Redis was rebuilt (which replays
    the same record). Receive times are capped at the worker's clock plus the allowed
    skew."""
    start_worker()
    ahead = time.time() + 10 * 365 * 86400
    producer = KafkaProducer(**kafka_tools.client_options(settings), acks="all")
    producer.send(settings.topic_events, key=b"forger", value=orjson.dumps(
        {"v": 1, "events": [{"event_id": "f1", "type": "purchase", "user_id": "forger",
                             "item_id": "forged", "quantity": 3, "ts": ahead,
                             "received_at": ahead}]})).get(timeout=30)  # a batch of its own
    dated = producer.send(settings.topic_events, key=b"forger",
                          timestamp_ms=int(ahead * 1000),
                          value=orjson.dumps({"type": "view", "user_id": "forger",
                                              "item_id": "forged", "ts": ahead}))
    producer.flush()
    try:
        dated.get(timeout=30)
        views = 1
    except InvalidTimestampError:
        views = 0  # Apache Kafka refuses a record time this far ahead itself
    client = redis.Redis.from_url(settings.redis_url)
    wait_for(lambda: int(client.hget(K.item_stats("forged"), "purchase") or 0) == 1
             and int(client.hget(K.item_stats("forged"), "view") or 0) == views)
    producer.close()  # (a refused record leaves kafka-python's producer failed: a new one)
    producer = KafkaProducer(**kafka_tools.client_options(settings), acks="all")
    producer.send(settings.topic_events, key=b"shopper", value=orjson.dumps(
        {"v": 1, "events": [{"event_id": "r1", "type": "view", "user_id": "shopper",
                             "item_id": "real", "ts": time.time(),
                             "received_at": time.time()}]}))
    producer.flush()
    producer.close()
    wait_for(lambda: int(client.hget(K.item_stats("real"), "view") or 0) == 1)
    epoch = float(client.get(K.trending_epoch) or 0)
    assert epoch <= time.time() + settings.max_future_skew_s + 5
    assert float(client.zscore(K.trending, "real") or 0) > 0
    client.close()
