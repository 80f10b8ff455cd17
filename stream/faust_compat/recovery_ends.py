"""Where Faust's table recovery stops reading a changelog, on Tansu.

Faust restores a table by reading its changelog up to each partition's end offset, which
it asks with ListOffsets "latest" (``AIOKafkaConsumerThread._highwaters``). Tansu 0.6.0
answers that with the base offset of the partition's last record batch plus one
(measured: 3 records produced in one batch at offsets 0-2 → 1), so recovery stopped after
the first record of the last batch: a restarted worker lost the newest history entries
of that batch's entities, and the tombstones ``streamrec replay --rebuild`` writes to
empty the table (one batch per partition) never reached it, so the replay ran over the
old histories (co-occurrence pairs with items the shopper touched only later, lists that
differed from one replay to the next). On Tansu the worker installs a reader of the fetch
high watermark (:func:`core.kafka_tools.fetch_high_watermarks`, as ``streamrec status``
reads end offsets there); on Apache Kafka Faust's own answer stands.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread
from faust.types import TP

#: Reads the end offset of each changelog partition (a blocking call: run in a thread),
#: or answers None to leave it to Faust (a broker that is not Tansu).
EndOffsets = Callable[[Sequence[TP]], Mapping[TP, int] | None]

_original_highwaters = AIOKafkaConsumerThread._highwaters
_reader: EndOffsets | None = None


async def _highwaters(self: Any, partitions: Iterable[TP]) -> Mapping[TP, int]:
    tps = list(partitions)
    reader = _reader
    if reader is not None and not self.consumer.in_transaction:
        ends = await asyncio.get_running_loop().run_in_executor(None, reader, tps)
        if ends is not None:
            return ends
    return await _original_highwaters(self, tps)


def set_end_offsets(reader: EndOffsets | None) -> None:
    """Make Faust's recovery ask ``reader`` for changelog end offsets (None: Faust's own
    ListOffsets again); idempotent (the method is replaced once)."""
    global _reader
    _reader = reader
    AIOKafkaConsumerThread._highwaters = _highwaters  # type: ignore[method-assign]


def fetch_end_offsets(options: Mapping[str, Any], tansu: Callable[[], bool]) -> EndOffsets:
    """A reader of the fetch high watermarks with a consumer of its own built from the
    kafka-python client ``options`` (``core.kafka_tools.client_options``), when
    ``tansu()`` says the broker is Tansu (asked at each recovery: the broker may not
    have been up when the worker started)."""

    def read(tps: Sequence[TP]) -> Mapping[TP, int] | None:
        from kafka import KafkaConsumer, TopicPartition

        from core.kafka_tools import HIGHWATER_FETCH_WAIT_MS, fetch_high_watermarks

        if not tps or not tansu():
            return None
        consumer = KafkaConsumer(**options, enable_auto_commit=False,
                                 fetch_max_wait_ms=HIGHWATER_FETCH_WAIT_MS)
        try:
            ends = fetch_high_watermarks(
                consumer, [TopicPartition(tp.topic, tp.partition) for tp in tps])
        finally:
            consumer.close()
        return {tp: ends[TopicPartition(tp.topic, tp.partition)] for tp in tps}

    return read
