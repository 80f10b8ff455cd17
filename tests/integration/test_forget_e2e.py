"""Forgetting a user end to end (API.md "Merchandising"): a real API process and worker
process on the session's Tansu and redis-server. After ``DELETE /v1/users/{id}`` the
user's and its anonymous id's history, lists, cart and purchases are gone from Redis and
the worker's table, distinct-user counts leave them out, the id is served as a new
visitor, and neither a rebuild of a flushed Redis nor a retrain brings anything back; a
worker killed in the middle of a forget's background sweep leaves it to the next one."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import orjson
import pytest
import redis
from kafka import KafkaProducer, TopicPartition

from core import kafka_tools
from core.redis_keys import RedisKeys
from core.settings import Settings
from schemas import EventEnvelope, TopicEvent
from schemas.merch import ForgetRecord
from stream.retrain import train_and_publish
from streamrec.ops.history_table import changelog_topic
from streamrec.stack.servers import stop_pid
from tests.integration.conftest import api_process
from tests.polling import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.e2e, pytest.mark.broker]

K = RedisKeys()
TRACK, READ, ADMIN = "track-key-01234567", "read-key-012345678", "admin-key-01234567"
HT, HR, HA = ({"X-API-Key": key} for key in (TRACK, READ, ADMIN))


@pytest.fixture
def stack(settings: Settings, start_worker: Callable[..., Any], tmp_path: Any
          ) -> Iterator[tuple[httpx.Client, Settings]]:
    start_worker()
    with api_process(settings, tmp_path, tracking_keys=TRACK, read_keys=READ,
                     admin_keys=ADMIN, retrain_min_events=5) as running:
        yield running


def history_keys(settings: Settings) -> dict[str, bool]:
    """Per key of the worker's history table: whether its latest changelog record holds a
    history (False: a tombstone)."""
    latest: dict[str, bool] = {}
    for record in kafka_tools.read_topic(settings, changelog_topic(settings), timeout_s=30):
        if record.key is not None:  # Faust writes the table's keys as JSON
            latest[orjson.loads(record.key)] = record.value is not None
    return latest


def test_a_forgotten_user_is_gone_and_stays_gone(stack: tuple[httpx.Client, Settings]) -> None:
    client, settings = stack
    r = redis.Redis.from_url(settings.redis_url, decode_responses=True)
    items = [{"item_id": f"sku-{i}", "name": f"Item {i}", "category": f"c{i % 2}",
              "price": 1.0 + i} for i in range(8)]
    assert client.post("/v1/items", json={"items": items}, headers=HA).status_code == 202
    events = [{"type": "view", "user_id": "u1", "item_id": "sku-1"},
              {"type": "add_to_cart", "user_id": "u1", "item_id": "sku-2"},
              {"type": "purchase", "user_id": "u1", "item_id": "sku-3"},
              {"type": "view", "anonymous_id": "a1", "item_id": "sku-4"},
              *({"type": "view", "user_id": f"u{n}", "item_id": f"sku-{n % 8}"}
                for n in range(2, 10)),
              {"type": "view", "user_id": "u2", "item_id": "sku-1"}]
    assert client.post("/v1/events", json={"events": events}, headers=HT).status_code == 202
    assert client.post("/v1/identify", json={"anonymous_id": "a1", "user_id": "u1"},
                       headers=HT).status_code == 202
    wait_for(lambda: r.sismember(K.user_anons("u1"), "a1") and r.exists(K.user_bought("u1"))
             and r.sismember(K.item_users("sku-4"), "a1"), 30, "u1's state in Redis")
    stats = client.get("/v1/admin/items/sku-1/stats", headers=HA).json()
    assert stats["distinct_users"] == 3  # u1, u2 and u9

    resp = client.delete("/v1/users/u1", headers=HA)
    accepted = time.monotonic()
    assert resp.status_code == 202 and resp.json()["ids"] == ["u1", "a1"]

    def gone() -> bool:
        keys = [*K.entity_keys("u1"), *K.entity_keys("a1")]
        tables = history_keys(settings)
        return (not r.exists(*keys) and tables.get("u1") is False
                and tables.get("a1") is False
                and not r.sismember(K.item_users("sku-1"), "u1")
                and not r.sismember(K.item_users("sku-4"), "a1"))

    wait_for(gone, 30, "u1 and a1 forgotten in Redis and the worker's table")
    print(f"\nFORGET: gone from Redis and the table {time.monotonic() - accepted:.2f}s after "
          "the 202")
    assert client.get("/v1/admin/items/sku-1/stats", headers=HA).json()["distinct_users"] == 2
    answer = client.get("/v1/users/u1/recommendations?n=5", headers=HR).json()
    assert answer["source"] in ("popular", "fallback")
    assert {i["reason"] for i in answer["items"]} <= {"popular", "fallback"}
    assert "sku-3" in {i["item_id"] for i in answer["items"]}  # no purchase filter: new

    # Redis flushed: the worker rebuilds from the log without them.
    r.flushdb()
    wait_for(lambda: r.exists(K.sentinel), 60, "rebuild after the flush")
    assert float(r.hget(K.forgotten, "u1") or 0) > 0
    assert not r.exists(*K.entity_keys("u1"), *K.entity_keys("a1"))
    assert r.smembers(K.item_users("sku-1")) == {"u2", "u9"}
    # A retrain (on the log, without them) writes no list for them.
    train_and_publish(settings, wait_live_s=20)
    assert r.exists(K.user_recs("u2")) and not r.exists(K.user_recs("u1"))
    r.close()


def test_a_worker_killed_mid_sweep_leaves_the_sweep_to_the_next(
        settings: Settings, start_worker: Callable[..., Any]) -> None:
    """SIGKILL after the forget's offset was committed and before its sweep was done:
    the ids pending for the sweep were only in the worker's memory, so the restarted
    worker (not given the forget again) never swept them, and u7 stayed for ever in the
    item sets its history had lost (counted in their distinct users)."""
    r = redis.Redis.from_url(settings.redis_url, decode_responses=True)
    # Memberships older than u7's history (the worker's table holds none of it): only
    # the sweep finds them. Many items: the sweep outlasts the offset commit.
    pipe = r.pipeline(transaction=False)
    for n in range(40):
        pipe.sadd(K.item_users(f"old{n}"), "u7", "u2")
        pipe.zadd(K.item_carters_gone(f"old{n}"), {"u7": 1.0})
    pipe.sadd(K.user_anons("u8"), "u7", "a8")
    for n in range(150000):
        pipe.sadd(K.item_users(f"other{n}"), "u9")
    pipe.execute()
    first = start_worker()
    at = time.time()
    producer = KafkaProducer(**kafka_tools.client_options(settings), acks="all")
    producer.send(settings.topic_forgotten, key=b"u7",
                  value=ForgetRecord(entity="u7", at=at).model_dump_json().encode())
    r.hset(K.forgotten, "u7", repr(at))  # as the API does
    forget = TopicEvent(event_id="f7", type="forget", user_id="u7", ts=at, received_at=at)
    sent = producer.send(settings.topic_events, key=b"u7", value=orjson.dumps(
        EventEnvelope(events=[forget]).model_dump(exclude_none=True))).get(timeout=30)
    producer.close()
    wait_for(lambda: r.hexists(K.forgotten_pending, "u7"), 30, "u7's erase")
    where = TopicPartition(settings.topic_events, sent.partition)
    wait_for(lambda: kafka_tools.committed_offsets(settings, settings.app_id).get(
        where, 0) > sent.offset, 30, "the forget's offset committed")  # not redelivered
    stop_pid(first.pid, sig=signal.SIGKILL)
    first.wait(10)
    assert r.sismember(K.user_anons("u8"), "u7"), "the sweep ended before the kill"
    start_worker()  # takes u7's partition, and its sweep
    wait_for(lambda: not r.exists(K.forgotten_pending), 120, "the resumed sweep")
    assert r.smembers(K.user_anons("u8")) == {"a8"}
    for n in range(40):
        assert r.smembers(K.item_users(f"old{n}")) == {"u2"}
        assert r.zscore(K.item_carters_gone(f"old{n}"), "u7") is None
    r.close()


def test_a_forgotten_enrolled_user_is_enrolled_again_when_back(
        stack: tuple[httpx.Client, Settings]) -> None:
    """docs/privacy.md: an id forgotten while enrolled in an experiment (promoted items
    leading its list) and back is assigned again and counts as a new entity. The API
    process had kept the id's assignment in its cache, so the return was served its
    variant without being enrolled or exposed again: the report never counted it."""
    client, settings = stack
    r = redis.Redis.from_url(settings.redis_url, decode_responses=True)
    experiment = {"variants": [{"name": "treatment", "weight": 1.0, "serve": "personalized"}],
                  "contexts": ["home"]}
    assert client.put("/v1/admin/experiments/fx", json=experiment,
                      headers=HA).status_code == 200
    promotion = {"item_ids": ["sku-p"], "share": 0.5, "contexts": ["home"]}
    assert client.put("/v1/admin/promotions/fp", json=promotion,
                      headers=HA).status_code == 200

    def answer() -> None:
        body = client.get("/v1/users/u5/recommendations?n=4", headers=HR).json()
        assert body["experiment"] == {"id": "fx", "variant": "treatment"}
        assert body["items"][0]["item_id"] == "sku-p" and body["items"][0]["reason"] == "promoted"

    def entities() -> int:
        report = client.get("/v1/admin/experiments/fx/report", headers=HA).json()
        return int(report["variants"][0]["entities"])

    answer()
    wait_for(lambda: entities() == 1, 30, "u5 exposed")
    count = r.get(K.experiments_rev)
    assert client.delete("/v1/users/u5", headers=HA).status_code == 202
    wait_for(lambda: not r.hexists(K.experiment_assign("fx"), "u5")
             and r.get(K.experiments_rev) != count, 30, "u5's assignment erased")
    answer()  # back: a new visitor, enrolled and exposed again
    assert r.hexists(K.experiment_assign("fx"), "u5")
    wait_for(lambda: entities() == 2, 30, "the return counted as a new entity")
    r.close()
