"""The Faust worker as a real process on the real broker and Redis."""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Callable
from typing import Any

import orjson
import pytest
import redis
from kafka import KafkaProducer

from core import kafka_tools
from core.redis_keys import RedisKeys
from core.settings import Settings
from stream.retrain import train_and_publish
from stream.row_lists import decode_rows
from tests.polling import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.broker]
K = RedisKeys()


def envelope(i: int, user: str, item: str, etype: str = "view") -> bytes:
    now = time.time()
    return orjson.dumps({"v": 1, "events": [{"event_id": f"e{i}", "type": etype, "user_id": user,
                                            "item_id": item, "ts": now, "received_at": now}]})


def produce(settings: Settings, records: list[tuple[bytes, bytes]], topic: str | None = None
            ) -> None:
    producer = KafkaProducer(**kafka_tools.client_options(settings), acks="all")
    for key, value in records:
        producer.send(topic or settings.topic_events, key=key, value=value)
    producer.flush()
    producer.close()


def processed(client: redis.Redis) -> int:
    return int(client.hget(K.stats, "processed") or 0)


def test_worker_pipeline(settings: Settings, start_worker: Callable[..., Any]) -> None:
    worker = start_worker()
    client = redis.Redis.from_url(settings.redis_url)
    # 40 users, each viewing a run of ~8 of the 23 items.
    records = [(f"u{i % 40}".encode(),
                envelope(i, f"u{i % 40}", f"i{(i // 40 + 3 * (i % 40)) % 23}"))
               for i in range(300)]
    records.append((b"bad", b"\xff\xfe not json"))
    records.append((b"bad", json.dumps({"v": 1, "events": [{"type": "view"}]}).encode()))
    produce(settings, records)
    produce(settings, [(b"i3", json.dumps({"item_id": "i3", "name": "Three", "price": 2.5,
                                            "in_stock": False, "updated_at": time.time()}
                                           ).encode())], settings.topic_catalog)
    wait_for(lambda: processed(client) >= 300)
    wait_for(lambda: int(client.hget(K.stats, "dead_lettered") or 0) >= 2)
    dlq = list(kafka_tools.read_topic(settings, settings.topic_dlq, timeout_s=30))
    reasons = [orjson.loads(r.value)["reason"] for r in dlq]
    assert any("not JSON" in r for r in reasons) and any("schema" in r for r in reasons)
    assert any("original_b64" in orjson.loads(r.value) for r in dlq)
    wait_for(lambda: client.sismember(K.unavailable, "i3"))
    assert client.hget(K.item_meta("i3"), "name") == b"Three"
    assert client.zcard(K.popular) == 23

    result = train_and_publish(settings, wait_live_s=20)
    assert result.live and result.n_users == 40
    before = orjson.loads(client.get(K.user_recs("u1")))
    assert before["v"] == result.version and before["items"]
    # The worker's binary neighbour lists hold exactly the JSON lists (stream.row_lists).
    ids = orjson.loads(client.get(K.model_item_ids(result.version)))
    binary = client.hgetall(K.model_similar_rows(result.version))
    assert len(binary) == 23
    for item, raw in binary.items():
        got = decode_rows(raw, 100)
        want = orjson.loads(client.get(K.item_similar(item.decode())))["items"]
        assert [[ids[r], s] for r, s in zip(got.rows.tolist(), got.scores.tolist(),
                                            strict=True)] == want

    # A new event refolds the user within a couple of seconds.
    produce(settings, [(b"u1", envelope(10_001, "u1", "i5", "purchase"))])
    wait_for(lambda: orjson.loads(client.get(K.user_recs("u1")))["ts"] > before["ts"], 5)
    assert client.zscore(K.user_bought("u1"), "i5") is not None

    # A SIGKILLed worker restarts with its history table recovered from the changelog.
    worker.send_signal(signal.SIGKILL)
    worker.wait(10)
    old_recent = orjson.loads(client.get(K.user_recent("u2")))
    start_worker()
    produce(settings, [(b"u2", envelope(10_002, "u2", "i22"))])
    wait_for(lambda: orjson.loads(client.get(K.user_recent("u2")))[0] == "i22")
    recent = orjson.loads(client.get(K.user_recent("u2")))
    assert set(old_recent) <= set(recent)
    client.close()
