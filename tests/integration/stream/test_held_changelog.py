"""A held changelog record sent again lands as its key's last record, on a real broker.

The worker holds a record Kafka refused and ``settle`` sends it again later
(``stream.deliveries``); a restore reads each key's last record of the changelog. Here a
forget's tombstone was refused while the key's next history went through, and an old
history was refused while the key's tombstone went through: after ``settle``, the
partition's last record of each key is what the table holds now (before, the resent
tombstone came last and a restore deleted the live history, and the old history came
back after its tombstone). The producer is aiokafka's (the one under Faust's), behind
the three calls ``settle`` makes of Faust's.
"""

from __future__ import annotations

from functools import partial
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer

from core import kafka_tools
from core.settings import Settings
from stream.deliveries import SendWatch, settle
from stream.history_store import changelog_record, changelog_value_now

pytestmark = pytest.mark.integration


class _Producer:
    """What ``settle`` calls of Faust's producer, over aiokafka's."""

    def __init__(self, producer: AIOKafkaProducer) -> None:
        self.producer = producer
        self.buffer = SimpleNamespace(size=0)

    async def flush(self) -> None:
        await self.producer.flush()

    async def send_and_wait(self, topic: str, key: bytes | None, value: bytes | None, *,
                            partition: int | None, **_: Any) -> Any:
        return await self.producer.send_and_wait(topic, value=value, key=key,
                                                 partition=partition)


def _last_records(settings: Settings, topic: str) -> dict[bytes, bytes | None]:
    """Each key's last record in ``topic``: what a restore of it keeps."""
    last: dict[bytes, bytes | None] = {}
    for record in kafka_tools.read_topic(settings, topic, timeout_s=30):
        last[record.key] = record.value
    return last


async def test_a_resent_record_is_the_key_s_history_now(settings: Settings) -> None:
    kafka_tools.create_topics(settings)
    topic = settings.topic_dlq  # any topic: the order of its records is what counts
    live: dict[str, Any] = {"entries": [["e2", "i2", "view", 2.0]]}
    old: dict[str, Any] = {"entries": []}
    table = {"u1": live}  # u1 viewed again after its forget; u2 forgotten since
    key1, value1 = changelog_record("u1", live)
    key2, value2 = changelog_record("u2", old)
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(topic, value=value1, key=key1, partition=0)
        await producer.send_and_wait(topic, value=None, key=key2, partition=0)
        watch = SendWatch()
        watch.current[topic] = partial(changelog_value_now, table)
        refused = RuntimeError("KafkaTimeoutError")
        watch.hold(topic, key1, None, partition=0, timestamp=None, headers=None, exc=refused)
        watch.hold(topic, key2, value2, partition=0, timestamp=None, headers=None,
                   exc=refused)
        app = SimpleNamespace(producer=_Producer(producer))
        await settle(app, watch, what="a test batch")  # type: ignore[arg-type]
        assert watch.held == []
    finally:
        await producer.stop()
    assert _last_records(settings, topic) == {key1: value1, key2: None}
