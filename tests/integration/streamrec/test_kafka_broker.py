"""Apache Kafka started from Maven jars keeps its log across a restart on the same directory.

Guards streamrec/kafka_broker.py: the storage is formatted once and never again, so
``streamrec down`` + ``up`` with the Kafka broker serves the same records; a topic's
``retention.ms=-1`` survives; ListOffsets by timestamp answers from the broker itself.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import ConfigResource, ConfigResourceType, NewTopic

from streamrec.stack import kafka_broker
from tests.conftest import java_missing

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(java_missing(), reason="Apache Kafka needs Java 17+: no `java` on the "
                       "PATH or in $JAVA_HOME"),
]

TOPIC = "durable"
RECORDS = 20
TS0 = 1_700_000_000_000  # record i has timestamp TS0 + i seconds


def _retention(bootstrap: str) -> str:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        res = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, TOPIC)],
                                     config_filter="all")
        return str(res["topic"][TOPIC]["retention.ms"]["value"])
    finally:
        admin.close()


def _read_all(bootstrap: str) -> list[tuple[int, bytes]]:
    """Every record of partition 0 as (timestamp, value), polled until all arrived."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap)
    tp = TopicPartition(TOPIC, 0)
    consumer.assign([tp])
    consumer.seek_to_beginning(tp)
    got: list[tuple[int, bytes]] = []
    deadline = time.monotonic() + 60
    try:
        while len(got) < RECORDS and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=500).values():
                got += [(msg.timestamp, msg.value) for msg in batch]
    finally:
        consumer.close()
    return got


def test_a_restarted_broker_serves_the_records_written_before(tmp_path: Path) -> None:
    broker = kafka_broker.start_kafka(tmp_path)
    try:
        assert broker.version == kafka_broker.pinned_version()
        admin = KafkaAdminClient(bootstrap_servers=broker.address)
        admin.create_topics([NewTopic(TOPIC, 1, 1, topic_configs={"retention.ms": "-1"})])
        admin.close()
        producer = KafkaProducer(bootstrap_servers=broker.address, acks="all")
        for i in range(RECORDS):
            producer.send(TOPIC, value=b"record-%d" % i, timestamp_ms=TS0 + i * 1000)
        producer.flush()
        producer.close()
    finally:
        broker.stop(timeout=60)

    again = kafka_broker.start_kafka(tmp_path, port=broker.port,
                                     controller_port=broker.controller_port)
    try:
        assert again.pid != broker.pid
        assert again.cluster_id == broker.cluster_id != "", "the storage was formatted again"
        assert _read_all(again.address) == [
            (TS0 + i * 1000, b"record-%d" % i) for i in range(RECORDS)]
        assert _retention(again.address) == "-1"

        consumer = KafkaConsumer(bootstrap_servers=again.address)
        tp = TopicPartition(TOPIC, 0)
        found = consumer.offsets_for_times({tp: TS0 + 7500})[tp]
        ends = consumer.end_offsets([tp])
        consumer.close()
        assert found is not None and found.offset == 8
        assert ends[tp] == RECORDS
    finally:
        again.stop(timeout=60)
