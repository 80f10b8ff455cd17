"""Synchronous Kafka helpers (kafka-python) for the CLI and the retrain job.

End offsets: Apache Kafka's ListOffsets "latest"; Tansu answers it too low when the last
batch holds several records, so on Tansu they come from the high watermark of fetch
responses instead (:mod:`core.broker` tells which broker answers). Offsets by time:
Kafka's ``offsets_for_times``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from functools import lru_cache
from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition

from core.connections import kafka_ssl_context
from core.settings import Settings


def security_options(settings: Settings) -> dict[str, Any]:
    """TLS/SASL options; the same names work for kafka-python and aiokafka clients."""
    opts: dict[str, Any] = {"security_protocol": settings.kafka_security_protocol}
    if settings.kafka_security_protocol in ("SSL", "SASL_SSL"):
        opts["ssl_context"] = kafka_ssl_context(settings)
    if settings.kafka_security_protocol.startswith("SASL"):
        opts.update(
            sasl_mechanism=settings.kafka_sasl_mechanism,
            sasl_plain_username=settings.kafka_sasl_username,
            sasl_plain_password=settings.kafka_sasl_password,
        )
    return opts


#: The fetch wait of a consumer that reads high watermarks (:func:`fetch_high_watermarks`).
#: Tansu answers a fetch only once its wait is over: with kafka-python's default of
#: 500 ms, ``streamrec status`` took 0.4-1 s a call on Tansu (the burst bench, which polls
#: it for lag 0, measured the end of a burst that much late).
HIGHWATER_FETCH_WAIT_MS = 10


def client_options(settings: Settings) -> dict[str, Any]:
    """Connection options shared by every kafka-python client (security included)."""
    return {"bootstrap_servers": settings.kafka_bootstrap.split(","),
            **security_options(settings)}


#: Keys up to this many bytes are cached (ids are short). A longer key (up to 1 KB: 256
#: characters of 4 bytes) is hashed each time: cached, 65,536 of them held ~72 MB.
CACHED_KEY_BYTES = 64


def partition_of(key: bytes, partitions: int) -> int:
    """The default Kafka partitioner (murmur2 of the key), as every producer here uses.

    The API, ``load --via kafka`` and the worker's own forwards must agree on where an
    entity lives (one worker owns it, its order is kept), so they all route through this.
    Cached for keys of up to :data:`CACHED_KEY_BYTES`: murmur2 is pure Python, and
    shoppers send many requests.
    """
    if len(key) <= CACHED_KEY_BYTES:
        return _cached_partition(key, partitions)
    return _murmur_partition(key, partitions)


def _murmur_partition(key: bytes, partitions: int) -> int:
    """The partition murmur2 of ``key`` gives among ``partitions``."""
    from kafka.partitioner.default import murmur2

    return (murmur2(key) & 0x7FFFFFFF) % partitions


_cached_partition = lru_cache(maxsize=1 << 16)(_murmur_partition)


def topic_names(settings: Settings) -> list[str]:
    """The topics streamrec needs."""
    return [settings.topic_events, settings.topic_catalog, settings.topic_dlq,
            settings.topic_forgotten]


def create_topics(settings: Settings, *, timeout_s: float = 20.0) -> list[str]:
    """Create streamrec's topics if absent, with their retention, compaction and replica
    configs (:mod:`core.topics`); returns the names created now."""
    from core.topics import ensure_topics

    return ensure_topics(settings, timeout_s=timeout_s).created


def high_watermarks(settings: Settings, topic: str, *, timeout_s: float = 10.0) -> dict[int, int]:
    """Per-partition end offsets of ``topic``: ListOffsets "latest" on Apache Kafka, the
    fetch high watermark on Tansu. An unreachable broker raises within ``timeout_s``
    (kafka-python's own bootstrap wait is 30 s: the worker's retrain tick, every 15 s,
    spent it whole on each tick while the broker was away)."""
    from core.broker import is_tansu

    consumer = KafkaConsumer(**client_options(settings), enable_auto_commit=False,
                             consumer_timeout_ms=200, fetch_max_wait_ms=HIGHWATER_FETCH_WAIT_MS,
                             bootstrap_timeout_ms=int(timeout_s * 1000))
    try:
        parts = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        if not is_tansu(settings):
            return {tp.partition: end for tp, end in end_offsets(consumer, tps).items()}
        ends = fetch_high_watermarks(consumer, tps, timeout_s=timeout_s)
        return {tp.partition: end for tp, end in ends.items()}
    finally:
        consumer.close()


def fetch_high_watermarks(consumer: KafkaConsumer, tps: list[TopicPartition], *,
                          timeout_s: float = 10.0) -> dict[TopicPartition, int]:
    """The fetch high watermark of each of ``tps``, read with ``consumer`` (which may be
    reused: assigning anew forgets the high watermarks it knew, so each call waits for
    fresh ones; made with ``fetch_max_wait_ms=HIGHWATER_FETCH_WAIT_MS``, or each fetch
    waits its default 500 ms on Tansu). The consumer ends up assigned to ``tps``."""
    if not tps:
        return {}
    consumer.unsubscribe()
    consumer.assign(tps)
    # Start at the "latest" answer (possibly low on Tansu) and fetch forward until the
    # high watermark is known for each partition.
    consumer.seek_to_end(*tps)
    result: dict[TopicPartition, int] = {}
    deadline = time.monotonic() + timeout_s
    while len(result) < len(tps) and time.monotonic() < deadline:
        # Short polls: one without records lasts its whole timeout, and the high
        # watermarks come with the first fetch answer (HIGHWATER_FETCH_WAIT_MS).
        consumer.poll(timeout_ms=HIGHWATER_FETCH_WAIT_MS * 2, max_records=10000)
        for tp in tps:
            hw = consumer.highwater(tp)
            if hw is not None:
                result[tp] = hw
    for tp in tps:
        if tp not in result:
            result[tp] = consumer.position(tp)
    return result


def end_offsets(consumer: KafkaConsumer,
                tps: list[TopicPartition]) -> dict[TopicPartition, int]:
    """Kafka's own end offsets (ListOffsets latest) of ``tps``: exact on Apache Kafka;
    on Tansu use :func:`fetch_high_watermarks` (its ListOffsets may answer low)."""
    if not tps:
        return {}
    return {tp: int(end) for tp, end in consumer.end_offsets(tps).items()}


def offsets_for_times(settings: Settings, topic: str, ts: float) -> dict[int, int]:
    """Per partition, the first offset whose record timestamp is ``>= ts``, or the end
    offset when there is none: Kafka's own ListOffsets by time (wrong on Tansu, which
    answers 0: ``streamrec replay`` searches there instead)."""
    consumer = KafkaConsumer(**client_options(settings), enable_auto_commit=False)
    try:
        tps = [TopicPartition(topic, p)
               for p in sorted(consumer.partitions_for_topic(topic) or set())]
        if not tps:
            return {}
        found = consumer.offsets_for_times(dict.fromkeys(tps, int(ts * 1000)))
        ends = consumer.end_offsets(tps)
        return {tp.partition: int(found[tp].offset) if found.get(tp) is not None
                else int(ends[tp]) for tp in tps}
    finally:
        consumer.close()


def committed_offsets(settings: Settings, group: str, *,
                      timeout_s: float = 10.0) -> dict[TopicPartition, int]:
    """The offsets ``group`` committed, per TopicPartition (OffsetFetch).

    Right after a broker restart the group coordinator loads for a few hundred ms, and
    on a new cluster the offsets topic is created on the first request: kafka-python 3
    raises CoordinatorLoadInProgressError / CoordinatorNotAvailableError instead of
    waiting, so those are retried.
    """
    from kafka.errors import (
        CoordinatorLoadInProgressError,
        CoordinatorNotAvailableError,
        NotCoordinatorError,
    )

    deadline = time.monotonic() + timeout_s
    admin = KafkaAdminClient(**client_options(settings), request_timeout_ms=10000)
    try:
        while True:
            try:
                raw = admin.list_group_offsets({group: None}).get(group, {})
                return {tp: int(meta.offset) for tp, meta in raw.items() if meta.offset >= 0}
            except (CoordinatorLoadInProgressError, CoordinatorNotAvailableError,
                    NotCoordinatorError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
    finally:
        admin.close()


def _log_reader(settings: Settings) -> KafkaConsumer:
    """A consumer for reading a whole log: no commits, large fetches."""
    return KafkaConsumer(**client_options(settings), enable_auto_commit=False,
                         max_partition_fetch_bytes=8 * 1024 * 1024,
                         fetch_max_bytes=64 * 1024 * 1024)


def read_topic(settings: Settings, topic: str, *, timeout_s: float = 600.0,
               poll_ms: int = 500, ends: dict[int, int] | None = None) -> Iterator[Any]:
    """Every record of ``topic`` from offset 0 to the high watermark at the time of reading.

    Used by the full retrain: the log is the source of truth. ``ends``, when given, is
    filled with the end offset read up to per partition (what the retrain saw of the log;
    its growth trigger compares later end offsets with these).
    """
    consumer = _log_reader(settings)
    try:
        parts = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        if not tps:
            return
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        targets = high_watermarks(settings, topic)
        if ends is not None:
            ends.update(targets)
        pending = {tp for tp in tps if targets.get(tp.partition, 0) > 0}
        deadline = time.monotonic() + timeout_s
        while pending and time.monotonic() < deadline:
            batches = consumer.poll(timeout_ms=poll_ms, max_records=50000)
            for tp, records in batches.items():
                stop = targets.get(tp.partition, 0)
                for record in records:
                    if record.offset < stop:
                        yield record
            for tp in list(pending):
                if consumer.position(tp) >= targets.get(tp.partition, 0):
                    pending.discard(tp)
        if pending:
            raise TimeoutError(f"reading {topic} did not reach its end in {timeout_s:.0f}s")
    finally:
        consumer.close()


def read_partitions(settings: Settings, topic: str, ends: dict[int, int], *,
                    timeout_s: float = 600.0, poll_ms: int = 500) -> Iterator[Any]:
    """The records of ``topic``'s partitions in ``ends`` (partition → end offset), one
    partition after the other in partition order, each from offset 0 up to its end.

    Unlike :func:`read_topic`, whose order depends on how fetches interleave, the order
    here is fixed: the full retrain reads the log with several processes at once and
    still builds the same matrix (:mod:`stream.retrain_read`).
    """
    consumer = _log_reader(settings)
    deadline = time.monotonic() + timeout_s
    try:
        for partition in sorted(p for p, end in ends.items() if end > 0):
            stop = ends[partition]
            tp = TopicPartition(topic, partition)
            consumer.assign([tp])
            consumer.seek_to_beginning(tp)
            while consumer.position(tp) < stop:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"reading {topic} partition {partition} did not "
                                       f"reach offset {stop} in {timeout_s:.0f}s")
                for record in consumer.poll(timeout_ms=poll_ms, max_records=50000).get(tp, ()):
                    if record.offset < stop:
                        yield record
    finally:
        consumer.close()
