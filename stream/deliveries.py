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
(``SendWatch.owner`` says ``GONE``): the in-memory table keeps a revoked partition's
histories, and its copy sent after the new owner's records would be the one a restore
reads.

**During a rebalance nobody knows who owns a partition** (``UNSURE``). Faust 0.15's
revoke (``App._on_partitions_revoked``) pauses the partitions, then awaits
``Consumer.wait_empty``: every batch in flight must be acked, and this worker's events
batch is acked only after :func:`settle`. aiokafka runs that callback before it sends
its JoinGroup, and Faust's assignor (``PartitionAssignor.is_active``) keeps the old
assignment until the SyncGroup's answer, so a settle that kept resending a refused
record kept "owning" its partition. Meanwhile the broker waits for this member at most
the group's rebalance timeout, then gives the partition to another worker, which
restores the changelog and writes the keys again: this worker's copy, still being sent,
could land after those and be the one the next restore reads (an old history).
So a history changelog record still held, or refused again, while ``app.rebalancing``
(from Faust's ``on_rebalance_start``, called before the revoke, to its
``on_rebalance_end``, after the new assignment and its recovery) is held back
(:func:`hold_back`, ``SendWatch.deferred``), not sent: the settle returns, and the
revoke is quick. Its batch is acked, but its source partition is withheld from every
commit (:func:`stream.faust_compat.commit_safety.set_withheld`), so Faust's commit in
``wait_empty`` (accepted by the broker until the group moves on) does not pass it:
whoever owns the partition next reads the batch again from the committed offset, and
applies it once (event ids). At ``on_rebalance_end`` the held-back records are held
again: for a partition that stayed here they are sent as the key's value now at the
next settle (the batch read again changes nothing in the table, so only this record
brings its effect to the changelog), and the partition is committed again once Kafka
acknowledged them; for a partition that moved they are dropped (the new owner restored
the changelog without them and applies the batch itself).

Not covered: a record already in the producer's hands when the rebalance begins (a
first send, or a send of :func:`settle` under way) lands when the producer delivers it,
within its request timeout; only a fenced producer (transactions, which Tansu lacks)
could stop that.
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
from stream.faust_compat.commit_safety import set_withheld
from stream.rebuild import RETRY_MAX_S, RETRY_MIN_S

log = logging.getLogger("streamrec.worker")

#: A table's value now of a key (its changelog record's key), as its changelog record
#: carries it, or None when the table holds none (deleted).
Current = Callable[[bytes], bytes | None]

#: Who owns a changelog's partition: this worker, another one, or nobody knows yet.
MINE, GONE, UNSURE = "mine", "gone", "unsure"

#: Whether this worker owns a changelog's partition (``(topic, partition)``): one of
#: :data:`MINE`, :data:`GONE`, :data:`UNSURE`.
Owner = Callable[[str, int | None], str]


def _always(topic: str, partition: int | None) -> str:
    return MINE


def owner_of(app: faust.App, topic: str, partition: int | None) -> str:
    """Whether this worker owns ``partition`` of ``topic`` (a table's changelog):
    :data:`UNSURE` while Faust rebalances (the revoke waits for the batch, the assignor
    still answers the old assignment), else whether Faust's last assignment made it the
    active owner. A held record of a partition that moved is the new owner's to write
    (it reads the batch again: its offsets were withheld here)."""
    if partition is None:
        return MINE
    if app.rebalancing:
        return UNSURE
    return MINE if app.assignor.is_active(TP(topic, partition)) else GONE


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
        #: Changelog topic -> the topic its partitions' records come from (whose
        #: offsets are withheld while a record is held back).
        self.sources: dict[str, str] = {}
        #: Whether a ``current`` changelog's partition is still this worker's.
        self.owner: Owner = _always
        #: Changelog records a rebalance held back (:func:`hold_back`), held again at
        #: its end (:meth:`on_rebalance_end`).
        self.deferred: list[Held] = []

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

    def on_rebalance_end(self, app: Any, state: Any) -> None:
        """The new assignment is known: the records a rebalance held back are held again,
        for the next :func:`settle` to send (partition still here) or drop (moved)."""
        self.held[:0] = self.deferred
        self.deferred = []
        self.fence()

    def fence(self) -> None:
        """Withhold from commits the source partitions of the changelog records held or
        held back: their batches are acked, their records not in Kafka yet."""
        set_withheld({(self.sources[r.topic], r.partition)
                      for r in (*self.deferred, *self.held)
                      if r.topic in self.sources and r.partition is not None
                      and r.key is not None})


def hold_back(held: list[Held], current: Mapping[str, Current],
              owner: Owner) -> tuple[list[Held], list[Held]]:
    """``held`` split into the records to send again now and those to hold back: a
    changelog's (in ``current``) of a partition whose owner ``owner`` says is
    :data:`UNSURE` (a rebalance under way) waits until the owner is known."""
    now: list[Held] = []
    later: list[Held] = []
    for record in held:
        unsure = (record.topic in current and record.key is not None
                  and owner(record.topic, record.partition) == UNSURE)
        (later if unsure else now).append(record)
    return now, later


def to_send_again(held: list[Held], current: Mapping[str, Current],
                  owner: Owner = _always) -> list[Held]:
    """``held`` as it is to be sent again: a record of a changelog in ``current`` is
    replaced by one record of its key with the table's value now (sent after every
    record of the key sent before, it is the one a restore reads last), or a tombstone
    when the table holds none and a held record was one; with neither (a value whose
    key was deleted since) nothing; nothing either when ``owner`` says a rebalance gave
    the record's partition to another worker (the table still holds its copy). Other
    records (forwards, dead letters: none replaces another) stay as they are."""
    out: dict[Any, Held] = {}
    deleted: set[Any] = set()
    for n, record in enumerate(held):
        if record.topic not in current or record.key is None:
            out[n] = record
            continue
        if owner(record.topic, record.partition) == GONE:
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
    acknowledged each one: only then may the caller acknowledge ``what`` (a batch). A
    history changelog record a rebalance holds back waits, its partition's offsets
    withheld from commits (the module's docstring says why).
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
        held, later = hold_back(watch.take(), watch.current, watch.owner)
        _defer(watch, later, what)
        if not held:
            break
        if rounds == 0:
            topics = sorted({h.topic for h in held})
            log.error("Kafka refused %d record(s) of %s (to %s; first: %s); sending them "
                      "again until acknowledged, the batch's offsets wait", len(held), what,
                      ", ".join(topics), held[0].error)
        rounds += 1
        await asyncio.sleep(delay)
        delay = min(delay * 2, RETRY_MAX_S)
        # the values and owners after the wait (a rebalance may have begun meanwhile)
        held, later = hold_back(held, watch.current, watch.owner)
        _defer(watch, later, what)
        for record in to_send_again(held, watch.current, watch.owner):
            if hold_back([record], watch.current, watch.owner)[1]:
                _defer(watch, [record], what)  # a rebalance began during this round
                continue
            try:
                await app.producer.send_and_wait(
                    record.topic, record.key, record.value, partition=record.partition,
                    timestamp=record.timestamp, headers=record.headers)
            except (KafkaError, ProducerSendError) as exc:
                watch.hold(record.topic, record.key, record.value,
                           partition=record.partition, timestamp=record.timestamp,
                           headers=record.headers, exc=exc)
    watch.fence()  # before the caller acks the batch
    if rounds and not watch.deferred:
        log.info("Kafka acknowledged the records of %s it had refused, after %d rounds "
                 "(%.1fs)", what, rounds, time.monotonic() - started)


def _defer(watch: SendWatch, records: list[Held], what: str) -> None:
    """Hold ``records`` back until the rebalance under way ends (:func:`hold_back`)."""
    if records:
        watch.deferred.extend(records)
        log.warning("a rebalance is under way: %d history changelog record(s) of %s held "
                    "back until it ends; the offsets of their partitions are not "
                    "committed meanwhile", len(records), what)
