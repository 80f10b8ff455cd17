"""A forward Kafka refuses holds its batch: nothing is committed past it, and it is sent
again until Kafka takes it (``stream.deliveries``). Faust's flush returns when a send is
done, acknowledged or not, so a refused forward was committed over and lost for good. The
refusal is logged without asyncio's "Future exception was never retrieved"
(``stream.faust_compat.send_errors``).

Apache Kafka only, on a broker of its own: the refusal is the events topic's
``max.message.bytes``, which Tansu 0.6.0 accepts and never applies."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis
from kafka import KafkaAdminClient, KafkaProducer
from kafka.admin import ConfigResource, ConfigResourceType, NewTopic

from core import kafka_tools
from core.redis_keys import RedisKeys
from core.settings import Settings
from streamrec.stack.servers import stop_pid
from tests.conftest import Infra, java_missing
from tests.integration.group_progress import committed_to_end
from tests.polling import wait_for

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(java_missing(), reason="Apache Kafka needs Java 17+"),
]
K = RedisKeys()
#: Room for the test's own small messages, not for a forwarded history of 20 long views.
SMALL_LIMIT = 3_000


@pytest.fixture(scope="module")
def kafka_address(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One Apache Kafka node for this module."""
    from streamrec.stack.kafka_broker import start_kafka

    broker = start_kafka(tmp_path_factory.mktemp("refusing"))
    try:
        yield broker.address
    finally:
        broker.stop(timeout=30)


@pytest.fixture
def settings(infra: Infra, kafka_address: str, tmp_path: Path) -> Settings:
    """The conftest's settings on this module's broker, the events topic created with a
    small ``max.message.bytes`` (the worker creates only the topics still absent)."""
    tag = f"{time.time_ns():x}"[-8:]
    s = Settings(kafka_bootstrap=kafka_address, redis_url=infra.redis_url,
                 topic_events=f"events-{tag}", topic_catalog=f"catalog-{tag}",
                 topic_dlq=f"events-dlq-{tag}", topic_forgotten=f"forgotten-{tag}",
                 app_id=f"streamrec-test-{tag}", state_dir=tmp_path / ".streamrec",
                 topic_partitions=2, retrain_interval_s=0)
    client = redis.Redis.from_url(infra.redis_url)
    client.flushdb()
    client.close()
    _admin(s, lambda admin: admin.create_topics([NewTopic(
        s.topic_events, 2, 1, topic_configs={"max.message.bytes": str(SMALL_LIMIT)})]))
    return s


def _admin(settings: Settings, call: Callable[[KafkaAdminClient], Any]) -> None:
    admin = KafkaAdminClient(**kafka_tools.client_options(settings))
    try:
        call(admin)
    finally:
        admin.close()


def _message(*events: dict[str, Any]) -> bytes:
    return orjson.dumps({"v": 1, "events": list(events)})


def _event(n: int, etype: str, item: str | None, **ids: str) -> dict[str, Any]:
    now = time.time() + n * 1e-6
    return {"event_id": f"rf-{n}", "type": etype, "item_id": item, "ts": now,
            "received_at": now, **ids}


def test_a_refused_forward_holds_its_batch_until_kafka_takes_it(
        settings: Settings, start_worker: Callable[..., Any], tmp_path: Path) -> None:
    worker = start_worker()
    client = redis.Redis.from_url(settings.redis_url)
    producer = KafkaProducer(**kafka_tools.client_options(settings), acks="all")
    items = [f"{i:02d}" + "v" * 200 for i in range(20)]  # ~6 KB of history to forward
    for n, item in enumerate(items):
        producer.send(settings.topic_events, key=b"rf-anon",
                      value=_message(_event(n, "view", item, anonymous_id="rf-anon")))
    identify = producer.send(settings.topic_events, key=b"rf-anon", value=_message(
        _event(100, "identify", None, anonymous_id="rf-anon", user_id="rf-user"))).get(30)
    producer.flush()
    log_path = tmp_path / "worker-0.log"
    wait_for(lambda: "Kafka refused" in log_path.read_text(errors="replace"), timeout=90)

    # Held: the identify's offset is not committed, and the user has no history yet.
    committed = kafka_tools.committed_offsets(settings, settings.app_id)
    done = {tp.partition: off for tp, off in committed.items()
            if tp.topic == settings.topic_events}
    assert done.get(identify.partition, 0) <= identify.offset, (done, identify)
    assert client.get(K.user_recent("rf-user")) is None

    # The limit raised: the forward goes through, the user gets the anonymous views, and
    # the group commits to the end of the log.
    _admin(settings, lambda admin: admin.alter_configs([ConfigResource(
        ConfigResourceType.TOPIC, settings.topic_events,
        configs={"max.message.bytes": str(1024 * 1024)})]))
    wait_for(lambda: items[-1].encode() in (client.get(K.user_recent("rf-user")) or b""),
             timeout=90)

    wait_for(lambda: committed_to_end(settings), timeout=60)
    producer.close()
    client.close()

    # Handled, so no asyncio noise: it reported the refused record's Faust future as
    # "never retrieved" (with a traceback) when the stopping worker collected it.
    stop_pid(worker.pid, timeout=30)
    log = log_path.read_text(errors="replace")
    assert "Kafka acknowledged the records of an events batch" in log
    assert "worker stopped cleanly" in log
    assert "never retrieved" not in log
