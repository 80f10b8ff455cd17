"""``streamrec replay --from-time A --to-time B``: re-drive a time range of the events
topic onto it again (or ``--to-topic``), at N× the original pace or as fast as possible
(the module doc of :mod:`streamrec.ops.replay` says what that leaves unchanged)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from core.settings import Settings
from streamrec.ops.group_offsets import offsets_for_time, reader


def records_in_range(settings: Settings, start: float, end: float) -> Iterator[Any]:
    """Records of the events topic with ``start <= timestamp < end``, per partition order,
    merged by timestamp (so pacing follows the original).

    Reads each partition from its first record at or after ``start`` to its end: a record
    past ``end`` does not end the range, because a backfill (``load --via kafka``, record
    time = event time) appended after newer traffic puts older records behind it. A
    record with the same key and value as an earlier one of its partition is left out:
    the copies an earlier re-drive of this range appended (they keep the original's
    time), which would otherwise double the range at every re-drive."""
    import hashlib
    import heapq

    from kafka import TopicPartition

    from core.kafka_tools import high_watermarks

    topic = settings.topic_events
    starts = offsets_for_time(settings, topic, start)
    ends = high_watermarks(settings, topic)
    start_ms, stop_ms = int(start * 1000), int(end * 1000)
    per_partition: list[list[Any]] = []
    consumer = reader(settings, max_partition_fetch_bytes=8 << 20)
    try:
        for partition, first in starts.items():
            tp = TopicPartition(topic, partition)
            consumer.assign([tp])
            consumer.seek(tp, first)
            out: list[Any] = []
            seen: set[bytes] = set()
            end_offset = ends.get(partition, 0)
            while first < end_offset and consumer.position(tp) < end_offset:
                batch = consumer.poll(timeout_ms=500, max_records=10000)
                for record in batch.get(tp, ()):
                    if record.offset >= end_offset or not (
                            start_ms <= record.timestamp < stop_ms):
                        continue
                    key, value = record.key or b"", record.value or b""
                    digest = hashlib.blake2b(len(key).to_bytes(4, "big") + key + value,
                                             digest_size=16).digest()
                    if digest not in seen:
                        seen.add(digest)
                        out.append(record)
            per_partition.append(out)
    finally:
        consumer.close()
    yield from heapq.merge(*per_partition, key=lambda r: r.timestamp)


def redrive(settings: Settings, start: float, end: float, *, speed: float | None,
            target_topic: str | None = None, progress: bool = True) -> int:
    """Re-produce the range at ``speed``× (None = as fast as possible); returns count."""
    from kafka import KafkaProducer

    from core.kafka_tools import client_options
    from stream.forget import read_forgotten, scrub
    from streamrec.progress import progress_bar

    forgotten = read_forgotten(settings)
    records = list(records_in_range(settings, start, end))
    topic = target_topic or settings.topic_events
    producer = KafkaProducer(**client_options(settings), acks="all", linger_ms=5,
                             batch_size=1 << 20, max_request_size=8 << 20)
    try:
        wall0 = time.monotonic()
        first = records[0].timestamp if records else 0
        for record in progress_bar(iterable=records, unit="msg", desc="replay",
                                   enabled=progress):
            if speed:
                due = (record.timestamp - first) / 1000 / speed
                wait = due - (time.monotonic() - wall0)
                if wait > 0:
                    time.sleep(wait)
            value = scrub(record.value, forgotten)  # nothing of a forgotten user
            if value is None:
                continue
            # The original record time: it is the receive time of events that carry
            # none of their own (stream.decode), so abuse rules and trending decide alike.
            producer.send(topic, key=record.key, value=value,
                          partition=record.partition if topic == settings.topic_events
                          else None, timestamp_ms=record.timestamp)
        producer.flush()
    finally:
        producer.close()
    return len(records)
