"""The worker's history table, emptied by ``streamrec replay --rebuild`` (step 3 of
:mod:`streamrec.ops.replay`): its changelog topic deleted on Apache Kafka, tombstoned key
by key on Tansu (which can neither delete records nor compact)."""

from __future__ import annotations

import time

from core.settings import Settings
from streamrec.ops.group_offsets import ReplayError


def changelog_topic(settings: Settings) -> str:
    """The Faust changelog topic of the history table."""
    from core.topics import changelog_topic as name

    return name(settings)


def clear_table(settings: Settings) -> int | None:
    """Empty the history table (its workers stopped); returns how many entries it held
    (None on Apache Kafka: the changelog topic is deleted without reading it)."""
    from core.broker import is_tansu

    if not is_tansu(settings):
        delete_changelog(settings)
        return None
    return tombstone_changelog(settings)


def delete_changelog(settings: Settings, timeout_s: float = 60.0) -> None:
    """Delete the history changelog topic and wait until the broker no longer lists it
    (a worker started before would find it half-deleted); the next worker recreates it."""
    from kafka.errors import UnknownTopicOrPartitionError

    from core.topics import admin_client

    topic = changelog_topic(settings)
    admin = admin_client(settings)
    try:
        try:
            admin.delete_topics([topic])
        except UnknownTopicOrPartitionError:
            return
        deadline = time.monotonic() + timeout_s
        while topic in admin.list_topics():
            if time.monotonic() > deadline:
                raise ReplayError(f"{topic} still exists {timeout_s:.0f}s after deleting it")
            time.sleep(0.2)
    finally:
        admin.close()


def tombstone_changelog(settings: Settings) -> int:
    """Write a tombstone for every key in the history changelog; returns how many."""
    from kafka import KafkaProducer

    from core.kafka_tools import client_options, read_topic

    topic = changelog_topic(settings)
    live: dict[tuple[int, bytes], bool] = {}
    for record in read_topic(settings, topic, timeout_s=600):
        if record.key is not None:
            live[(record.partition, record.key)] = record.value is not None
    producer = KafkaProducer(**client_options(settings), acks="all", linger_ms=5)
    try:
        for (partition, key), present in live.items():
            if present:
                producer.send(topic, key=key, value=None, partition=partition)
        producer.flush()
    finally:
        producer.close()
    return sum(live.values())
