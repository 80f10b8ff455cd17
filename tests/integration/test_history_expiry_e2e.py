"""The worker's history table is bounded by the entity TTLs (real broker and Redis): a
history past its expiry leaves the table, as a tombstone on the changelog, so neither
the running worker nor a restore keeps it."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

import orjson
import pytest
from kafka import KafkaProducer

from core import kafka_tools
from core.settings import Settings
from core.topics import changelog_topic
from stream.history_expiry import EXPIRES, PARTITION
from streamrec.stack.servers import stop_pid
from tests.integration.worker_view import metric
from tests.polling import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.e2e, pytest.mark.broker]


def latest(settings: Settings) -> dict[bytes, Any]:
    """Per changelog key: its newest record (value None: a tombstone)."""
    out: dict[bytes, Any] = {}
    for record in kafka_tools.read_topic(settings, changelog_topic(settings), timeout_s=30):
        if record.key is not None:
            out[record.key] = record
    return out


def tick(settings: Settings, partitions: Iterable[int]) -> None:
    """One live event on each of ``partitions``: the sweep judges a partition by the
    newest receive time the worker applied from it as well as by the wall clock."""
    producer = KafkaProducer(**kafka_tools.client_options(settings), acks="all")
    now = time.time()
    for p in set(partitions):
        producer.send(settings.topic_events, key=f"clock-{p}".encode(), partition=p,
                      value=orjson.dumps({"v": 1, "events": [{
                          "event_id": f"tick-{p}-{now}", "type": "view", "item_id": "i1",
                          "user_id": f"clock-{p}", "ts": now, "received_at": now}]}))
    producer.flush()
    producer.close()


def test_a_history_past_its_ttl_leaves_the_table(settings: Settings,
                                                 start_worker: Callable[..., Any]) -> None:
    """Every id a client names (with the public tracking key: anyone) made a history in
    the worker's memory that never went away. Now each value carries its expiry (the
    newest receive time plus ``anonymous_ttl_s`` / ``entity_ttl_s``), and a timer
    deletes the expired ones."""
    worker = start_worker(history_sweep_interval_s=1.0)
    now = time.time()
    producer = KafkaProducer(**kafka_tools.client_options(settings), acks="all")
    for n, ids in enumerate(({"anonymous_id": "a-quiet"}, {"user_id": "u-live"})):
        key = next(iter(ids.values()))
        producer.send(settings.topic_events, key=key.encode(), value=orjson.dumps(
            {"v": 1, "events": [{"event_id": f"e{n}", "type": "view", "item_id": "i1",
                                 "ts": now, "received_at": now, **ids}]}))
    producer.flush()
    found: dict[bytes, Any] = {}

    def written() -> bool:
        found.update(latest(settings))
        return sum(k.endswith((b'a-quiet"', b"a-quiet", b'u-live"', b"u-live"))
                   for k in found) == 2
    wait_for(written, 60, "both histories on the changelog")
    quiet = next(r for k, r in found.items() if b"a-quiet" in k)
    value = orjson.loads(quiet.value)
    assert value[PARTITION] == quiet.partition
    assert value[EXPIRES] == int(now) + settings.anonymous_ttl_s  # not yet: kept
    stop_pid(worker.pid, timeout=10)
    # Fourteen days later, as far as this history can tell: its expiry in the past.
    producer.send(changelog_topic(settings), key=quiet.key, partition=quiet.partition,
                  value=orjson.dumps({**value, EXPIRES: int(now) - 1}))
    producer.flush()
    producer.close()
    restarted = start_worker(history_sweep_interval_s=1.0)  # restores, then sweeps
    # No event applied from its partition yet: a worker back after days away must not
    # delete a history whose newer events may wait in its backlog. A sweep over the
    # restored table (the gauge is set after each) kept both histories ...
    wait_for(lambda: metric(settings, restarted.pid, "streamrec_histories_held") == 2, 60,
             "a sweep of the restored table")
    assert latest(settings)[quiet.key].value is not None  # ... and wrote no tombstone
    tick(settings, [quiet.partition])

    def gone() -> bool:
        records = latest(settings)
        return records[quiet.key].value is None
    wait_for(gone, 60, "a tombstone for the expired history")
    live = next(r for k, r in latest(settings).items() if b"u-live" in k)
    assert live.value is not None  # within its TTL: kept


def test_a_history_an_older_version_wrote_leaves_the_table_after_its_ttl(
        settings: Settings, start_worker: Callable[..., Any]) -> None:
    """Values written before the stamps (``0cb3bfc``: no expiry, no partition) stayed in
    every worker's memory for good. The sweep gives them the expiry their newest receive
    time and the longer TTL make, on the partition the entity's key hashes to; a recent
    one, or one without any time, is kept."""
    kafka_tools.create_topics(settings)
    now = time.time()
    ttl = max(settings.entity_ttl_s, settings.anonymous_ttl_s)
    parts = settings.topic_partitions
    old = {"entries": [["o1", "i1", "view", now - ttl - 100]], "alias": "u-old",
           "received": now - ttl - 200}
    recent = {"entries": [["r1", "i1", "view", now - ttl - 100, now - 60]]}
    producer = KafkaProducer(**kafka_tools.client_options(settings), acks="all")
    rows = {"legacy-gone": old, "legacy-recent": recent, "legacy-timeless": {"entries": []}}
    for entity, value in rows.items():  # where the worker of 0cb3bfc put them
        producer.send(changelog_topic(settings), key=orjson.dumps(entity),  # a JSON key
                      value=orjson.dumps(value),
                      partition=kafka_tools.partition_of(entity.encode(), parts))
    producer.flush()
    producer.close()
    start_worker(history_sweep_interval_s=1.0)  # restores the table, then sweeps it
    tick(settings, (kafka_tools.partition_of(e.encode(), parts) for e in rows))

    def gone() -> bool:
        records = latest(settings)
        return records[b'"legacy-gone"'].value is None
    wait_for(gone, 60, "a tombstone for the expired history of the older version")
    records = latest(settings)
    assert records[b'"legacy-gone"'].partition == \
        kafka_tools.partition_of(b"legacy-gone", parts)
    assert records[b'"legacy-recent"'].value is not None
    assert records[b'"legacy-timeless"'].value is not None
