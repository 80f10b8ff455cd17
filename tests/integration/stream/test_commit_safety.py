"""Messages fetched while Faust seeks at the end of a rebalance are processed, not dropped.

Regression test for the rare loss in the SIGKILL chaos test (issue 6): Faust resumed the
source partitions before its seek to the committed offsets and cleared the stream queues
after it, so whatever was fetched during the seek was thrown away unprocessed, and its
offset could still be committed. A worker whose seek is slowed down on purpose
(``slow_seek_worker.py``) makes that window wide; every event must still be counted.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import orjson
import pytest
import redis
from kafka import KafkaProducer

from core import kafka_tools
from core.redis_keys import RedisKeys
from core.settings import Settings, env_for_child
from streamrec.stack.servers import spawn, stop_pid
from tests.integration.conftest import wait_worker_ready

pytestmark = [pytest.mark.integration, pytest.mark.broker]
K = RedisKeys()
SLOW_SEEK_WORKER = Path(__file__).with_name("slow_seek_worker.py")
ITEMS = 20


def counted_views(client: redis.Redis) -> int:
    """Views counted over all items of this test."""
    return sum(int(client.hget(K.item_stats(f"cs{i}"), "view") or 0) for i in range(ITEMS))


def produce_views(settings: Settings, first: int, n: int) -> None:
    """Produce ``n`` one-view messages with ids ``cs-{first}..``."""
    producer = KafkaProducer(**kafka_tools.client_options(settings), acks="all")
    now = time.time()
    for i in range(first, first + n):
        user = f"csu{i % 50}"
        producer.send(settings.topic_events, key=user.encode(), value=orjson.dumps(
            {"v": 1, "events": [{"event_id": f"cs-{i}", "type": "view", "user_id": user,
                                 "item_id": f"cs{i % ITEMS}", "ts": now + i * 1e-3}]}))
    producer.flush()
    producer.close()


def run_until_counted(settings: Settings, log: Path, expected: int) -> int:
    """Start a slow-seek worker, wait until ``expected`` views are counted (or 60 s),
    stop it gracefully; the views counted."""
    proc = spawn([sys.executable, str(SLOW_SEEK_WORKER), "2.0", "0.2"], log_path=log,
                 env=env_for_child(settings))
    client = redis.Redis.from_url(settings.redis_url)
    try:
        wait_worker_ready(settings, proc.pid, proc=proc)
        deadline = time.monotonic() + 60
        while counted_views(client) < expected and time.monotonic() < deadline:
            time.sleep(0.25)
        return counted_views(client)
    finally:
        client.close()
        stop_pid(proc.pid, timeout=10)


def test_messages_fetched_during_the_seek_are_not_dropped(settings: Settings,
                                                          tmp_path: Path) -> None:
    # A first run leaves committed offsets and a user-history changelog behind, so the
    # second start restores the table: Faust's fetcher is then already running when the
    # source partitions are resumed, which is the situation of a restarted worker.
    kafka_tools.create_topics(settings)
    # Only the stream may count here: with the sentinel set the worker does not rebuild
    # Redis from the log (which would count the dropped messages too).
    client = redis.Redis.from_url(settings.redis_url)
    client.set(K.sentinel, "test: no rebuild")
    client.close()
    produce_views(settings, 0, 200)
    assert run_until_counted(settings, tmp_path / "worker-1.log", 200) == 200
    produce_views(settings, 200, 3000)
    log = tmp_path / "worker-2.log"
    assert run_until_counted(settings, log, 3200) == 3200, f"see {log}"


async def test_a_partition_never_committed_is_read_again_from_its_start(
        settings: Settings) -> None:
    """The rebalance's seek to the committed offsets is what rewinds a fetch that ran
    ahead of processing; aiokafka leaves the position alone where nothing is committed
    (a new group, a fresh memory-only broker), so the worker skipped what it had fetched.
    Such a source partition is now sought to its start; a changelog's is not moved."""
    from aiokafka import AIOKafkaConsumer

    from stream.faust_compat.commit_safety import seek_uncommitted_to_start

    kafka_tools.create_topics(settings)
    produce_views(settings, 0, 40)
    consumer = AIOKafkaConsumer(settings.topic_events, bootstrap_servers=settings.kafka_bootstrap,
                                group_id=f"{settings.app_id}-rewind", enable_auto_commit=False,
                                auto_offset_reset="earliest")
    await consumer.start()
    try:
        fetched, deadline = 0, time.monotonic() + 60
        while fetched < 40 and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            fetched += sum(len(records) for records in batch.values())
        assert fetched == 40
        parts = consumer.assignment()
        committed = await consumer.seek_to_committed()
        assert set(committed.values()) == {None}
        assert sum([await consumer.position(tp) for tp in parts]) == 40  # not rewound
        assert await seek_uncommitted_to_start(consumer, committed, {settings.topic_events}
                                               ) == []  # a changelog topic stays put
        moved = await seek_uncommitted_to_start(consumer, committed, {"some-changelog"})
        assert set(moved) == parts
        assert [await consumer.position(tp) for tp in parts] == [0] * len(parts)
    finally:
        await consumer.stop()
