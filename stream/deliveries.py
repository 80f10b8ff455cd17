"""Every record the worker produces is acknowledged by Kafka before its batch is.

The worker writes to Kafka itself: forwards of identified anonymous histories (to the
user's ``events`` partition), dead-letter records and the history table's changelog.
Faust sends them all in the background and its ``producer.flush()`` only waits until
each send is *done*, whether Kafka acknowledged or refused it (aiokafka's flush is an
``asyncio.wait`` over the batches' futures); a refused record is a WARNING in Faust's
log and nothing else. A batch whose forward Kafka refused (a record over the topic's
``max.message.bytes``, a request that timed out, a topic the worker may not write) was
then committed, and its forwards were lost for good: the redelivery that could send them
again never came.

:class:`SendWatch`, a Faust sensor, keeps every record whose send failed, and the ones
a send refused at once (:func:`send_or_hold`); :func:`settle`, the last step of every
batch, flushes and sends them again with a backoff until Kafka acknowledges each one.
Meanwhile the batch is not acknowledged, so Faust commits none of its offsets, and a
worker stopped meanwhile leaves the batch to be redelivered. Logged as an ERROR once per
batch, counted in ``streamrec_produce_refused_total{topic}``; consumption waits, with
lag growing, until the cause is gone (the topic's limit raised, the broker back), as it
does for a Redis outage (:func:`stream.rebuild.retry_redis`).

A compacted changelog keeps each key's last record, and a restore reads it last: a held
record sent again after a newer record of its key (a forget's or an expiry's tombstone
refused while the key's next value went through, or the other way round) would restore
a deleted history or delete a live one. For a changelog the worker registers
(``SendWatch.current``), :func:`to_send_again` sends each key's value *now* once instead
of its held records, and nothing for a key whose partition this worker no longer holds
(``SendWatch.mine``): the in-memory table keeps a revoked partition's histories, and
its copy sent after the new owner's records would be the one a restore reads.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from functools import partial
from typing import Any

import faust
from aiokafka.errors import KafkaError
from faust.exceptions import ProducerSendError
from faust.types import TP

from stream import metrics
from stream.rebuild import RETRY_MAX_S, RETRY_MIN_S

log = logging.getLogger("streamrec.worker")

#: A table's value now of a key (its changelog record's key), as its changelog record
#: carries it, or None when the table holds none (deleted).
Current = Callable[[bytes], bytes | None]

#: Whether this worker still owns a changelog's partition (``(topic, partition)``).
Mine = Callable[[str, int | None], bool]


def _always(topic: str, partition: int | None) -> bool:
    return True


def active_on(app: faust.App, topic: str, partition: int | None) -> bool:
    """Whether Faust's last assignment gave this worker ``partition`` of ``topic`` (a
    table's changelog) as its active owner: a held record of a partition a rebalance
    moved is the new owner's to write (it re-reads the batch, unacknowledged here)."""
    return partition is None or app.assignor.is_active(TP(topic, partition))


@dataclass(frozen=True)
class Held:
    """A record Kafka did not acknowledge, as it was handed to the producer."""

    topic: str
    key: bytes | None
    value: bytes | None
    partition: int | None
    timestamp: float | None
    headers: Any
    error: str


class SendWatch(faust.Sensor):
    """Keeps the records whose send Kafka refused or that timed out (any topic: forwards,
    dead letters, changelogs), for :func:`settle` to send again."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.held: list[Held] = []
        #: One :func:`settle` sends again at a time; another one waits for it, so neither
        #: agent acknowledges a batch while a record of it is still being sent again.
        self.settling = asyncio.Lock()
        #: Changelog topic -> its table's value now of a key (:func:`to_send_again`).
        self.current: dict[str, Current] = {}
        #: Whether a ``current`` changelog's partition is still this worker's.
        self.mine: Mine = _always

    def on_send_initiated(self, producer: Any, topic: str, message: Any, keysize: int,
                          valsize: int) -> Any:
        """The record itself, handed back to :meth:`on_send_error` if its send fails."""
        return (topic, message)

    def on_send_error(self, producer: Any, exc: BaseException, state: Any) -> None:
        """Keep the refused record (Faust only logs it)."""
        topic, message = state
        self.hold(topic, message.key, message.value, partition=message.partition,
                  timestamp=message.timestamp, headers=message.headers, exc=exc)

    def hold(self, topic: str, key: bytes | None, value: bytes | None, *,
             partition: int | None, timestamp: float | None, headers: Any,
             exc: BaseException) -> None:
        """Keep one record to send again, and count it."""
        self.held.append(Held(topic, key, value, partition, timestamp, headers,
                              f"{type(exc).__name__}: {exc}"[:300]))
        metrics.PRODUCE_REFUSED.labels(topic).inc()

    def take(self) -> list[Held]:
        """The records held so far, in the order their sends failed; held no more."""
        held, self.held = self.held, []
        return held


def to_send_again(held: list[Held], current: Mapping[str, Current],
                  mine: Mine = _always) -> list[Held]:
    """``held`` as it is to be sent again: a record of a changelog in ``current`` is
    replaced by one record of its key with the table's value now (sent after every
    record of the key sent before, it is the one a restore reads last), or a tombstone
    when the table holds none and a held record was one; with neither (a value whose
    key was deleted since) nothing; nothing either when ``mine`` says a rebalance gave
    the record's partition to another worker (the table still holds its copy). Other
    records (forwards, dead letters: none replaces another) stay as they are."""
    out: dict[Any, Held] = {}
    deleted: set[Any] = set()
    for n, record in enumerate(held):
        if record.topic not in current or record.key is None:
            out[n] = record
            continue
        if not mine(record.topic, record.partition):
            continue
        slot = (record.topic, record.key)
        out.pop(slot, None)
        out[slot] = record  # at the place of the key's last held record
        if record.value is None:
            deleted.add(slot)
    again: list[Held] = []
    for slot, record in out.items():
        if isinstance(slot, tuple):
            now = current[record.topic](slot[1])
            if now is None and slot not in deleted:
                continue
            record = replace(record, value=now)
        again.append(record)
    return again


async def send_or_hold(topic: Any, watch: SendWatch, *, key: bytes | None,
                       value: bytes) -> None:
    """``topic.send``, with a send the producer refuses at once (its buffer full past the
    request timeout, a record over its own size limit) held for :func:`settle` instead
    of crashing the agent, which left the batch unacknowledged for good."""
    try:
        await topic.send(key=key, value=value)
    except ProducerSendError as exc:
        watch.hold(topic.get_topic_name(), key, value, partition=None, timestamp=None,
                   headers=None, exc=exc)


async def send_changelog(app: faust.App, watch: SendWatch, topic: str,
                         records: list[tuple[bytes, bytes, int]]) -> None:
    """Hand ``records`` (``(key, value, partition)``, a table's changelog) to the producer
    in one go, past Faust's per-record buffer (:meth:`stream.history_store.
    TableHistoryStore.flush` says why); a refused one is held for :func:`settle`, like
    every record Faust sends. Records Faust's buffer still queues (a forget's tombstone,
    a timer's table write) go first, so each key's records keep their order."""
    buffer = app.producer.buffer
    while buffer.size:
        await buffer.flush()
    send = app.producer.send
    for key, value, partition in records:
        try:
            sent = await send(topic, key, value, partition, None, None)
        except ProducerSendError as exc:
            watch.hold(topic, key, value, partition=partition, timestamp=None, headers=None,
                       exc=exc)
            continue
        # aiokafka's send answers a future; typed by Faust as a bare Awaitable.
        asyncio.ensure_future(sent).add_done_callback(
            partial(_hold_if_refused, watch, topic, key, value, partition))


def _hold_if_refused(watch: SendWatch, topic: str, key: bytes, value: bytes, partition: int,
                     sent: Any) -> None:
    """A changelog record's send done: held for :func:`settle` unless Kafka acknowledged
    it (Faust's sensors never see these records)."""
    exc = (asyncio.CancelledError("send cancelled") if sent.cancelled()
           else sent.exception())
    if exc is not None:
        watch.hold(topic, key, value, partition=partition, timestamp=None, headers=None,
                   exc=exc)


async def settle(app: faust.App, watch: SendWatch, *, what: str) -> None:
    """Flush the producer, then send every held record again, with a backoff, until Kafka
    acknowledged each one: only then may the caller acknowledge ``what`` (a batch).
    Faust's flush gives up on its buffer (the changelog records a table write queued)
    after 0.1 s without a send; it is called again until that buffer is empty."""
    await app.producer.flush()
    while app.producer.buffer.size:
        await app.producer.flush()
    async with watch.settling:
        await _send_again(app, watch, what)


async def _send_again(app: faust.App, watch: SendWatch, what: str) -> None:
    delay = RETRY_MIN_S
    rounds = 0
    started = time.monotonic()
    while watch.held:
        held = watch.take()
        if rounds == 0:
            topics = sorted({h.topic for h in held})
            log.error("Kafka refused %d record(s) of %s (to %s; first: %s); sending them "
                      "again until acknowledged, the batch's offsets wait", len(held), what,
                      ", ".join(topics), held[0].error)
        rounds += 1
        await asyncio.sleep(delay)
        delay = min(delay * 2, RETRY_MAX_S)
        # the values after the wait
        for record in to_send_again(held, watch.current, watch.mine):
            try:
                await app.producer.send_and_wait(
                    record.topic, record.key, record.value, partition=record.partition,
                    timestamp=record.timestamp, headers=record.headers)
            except (KafkaError, ProducerSendError) as exc:
                watch.hold(record.topic, record.key, record.value,
                           partition=record.partition, timestamp=record.timestamp,
                           headers=record.headers, exc=exc)
    if rounds:
        log.info("Kafka acknowledged the records of %s it had refused, after %d rounds "
                 "(%.1fs)", what, rounds, time.monotonic() - started)
