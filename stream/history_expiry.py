"""Histories of entities gone quiet leave the worker's table (a TTL on the table).

The worker keeps one history per entity in its Faust table, in memory, and every id a
client names makes one: with the public tracking key, anyone can create ids. Redis
state of an entity expires ``entity_ttl_s`` (``anonymous_ttl_s`` for anonymous ids)
after its last event (:class:`stream.bounds.StateBounds`); the table's values now do
too, so the table is bounded by the ids active within those TTLs, not by every id ever
seen.

Each table value the processor writes carries its expiry (:data:`EXPIRES`: the newest
receive time of the entity's events in the write plus the TTL, so a replay stamps the
same value) and its source partition (:data:`PARTITION`: its changelog tombstone must
go where its records went). :func:`sweep_expired` (a worker timer) deletes the expired
ones of the partitions this worker owns; a deletion is a tombstone on the changelog,
so a restore or a rebalance does not bring them back.

Values an older version wrote carry neither (:class:`LegacyExpiry`): the sweep gives
them the expiry their newest receive time and the longer of the two TTLs make (no
Redis state of the entity outlives it) and the partition the entity's key hashes to
(where its events, and so its changelog records, went). They stayed for good before,
however long their entity had been gone.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Container, Iterable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from typing import Any

from core.kafka_tools import partition_of
from schemas import TopicEvent
from stream import metrics
from stream.bounds import StateBounds
from stream.faust_compat.internals import current_event, partition_event

#: Table value field: epoch seconds after which the history may be deleted.
EXPIRES = "x"
#: Table value field: the events partition the history's changelog records go to.
PARTITION = "p"
log = logging.getLogger("streamrec.worker")

#: Values examined between two yields to the event loop (batches go on meanwhile).
SWEEP_CHUNK = 2000


def stamped(value: dict[str, Any], events: Sequence[TopicEvent], bounds: StateBounds,
            partition: int) -> dict[str, Any]:
    """``value`` (a history's ``to_dict``) with its expiry and partition: the TTL of an
    anonymous entity when its events are an anonymous id's (``user_id`` unset, or an
    ``identify``, which is the anonymous id's event), a user's otherwise."""
    # One plain pass, no generators: this runs for every history the worker writes.
    anonymous = False
    newest = events[0].receive_time if events else 0.0
    for ev in events:
        anonymous = anonymous or ev.user_id is None or ev.type == "identify"
        received = ev.receive_time
        if received > newest:  # as max() compares: the first of equals, NaN skipped after
            newest = received
    if math.isfinite(newest):
        value[EXPIRES] = int(newest) + bounds.ttl_s(anonymous)
    value[PARTITION] = partition
    return value


def _newest_receipt(value: dict[str, Any]) -> float | None:
    """The newest receive time a history value of an older version records (its entries'
    ``[id, item, type, ts(, received)]``, its receipts' ``[id, item, type, received]``,
    its first event's), or None when it records none."""
    times: list[Any] = [value.get("received")]
    times += [e[4] if len(e) > 4 else e[3] for e in value.get("entries") or ()
              if isinstance(e, list) and len(e) > 3]
    times += [r[3] for r in value.get("receipts") or () if isinstance(r, list) and len(r) > 3]
    found = [float(t) for t in times if isinstance(t, int | float) and math.isfinite(t)]
    return max(found, default=None)


@dataclass(frozen=True)
class LegacyExpiry:
    """The expiry and partition of a value written before values carried them: its
    newest receive time plus ``ttl_s`` (the longer TTL: whether the entity was
    anonymous is not recorded), and its key's partition of ``partitions``."""

    ttl_s: int
    partitions: int

    def __call__(self, entity: str, value: dict[str, Any]) -> tuple[Any, Any]:
        """``(expiry, partition)`` of ``value``, ``(None, None)`` when it is stamped or
        records no time."""
        if PARTITION in value or EXPIRES in value:
            return None, None
        newest = _newest_receipt(value)
        if newest is None:
            return None, None
        return int(newest) + self.ttl_s, partition_of(entity.encode(), self.partitions)


def expired(items: Iterable[tuple[str, Any]], now: float, owned: Container[int],
            legacy: LegacyExpiry | None = None) -> list[tuple[str, int]]:
    """``(entity, partition)`` of the values in ``items`` past their expiry, on a
    partition in ``owned`` (another worker's entity is that worker's to delete); with
    ``legacy``, values of an older version too."""
    out: list[tuple[str, int]] = []
    for entity, value in items:
        if not isinstance(value, dict):
            continue
        at, partition = value.get(EXPIRES), value.get(PARTITION)
        if legacy is not None and at is None and partition is None:
            at, partition = legacy(entity, value)
        if isinstance(at, int | float) and at < now and isinstance(partition, int) \
                and partition in owned:
            out.append((entity, partition))
    return out


def drop_expired(values: MutableMapping[str, Any], clocks: Mapping[int, float]) -> int:
    """Delete from ``values`` (histories by entity: a rebuild's, ``stream.rebuild``) those
    past their expiry by the clock of their partition (``clocks``: partition → the newest
    receive time read from it): the worker's table held them no more by then
    (:func:`sweep_expired`), so a replay of the whole log need not either; how many."""
    gone = []
    for entity, value in values.items():
        if not isinstance(value, dict):
            continue
        at, partition = value.get(EXPIRES), value.get(PARTITION)
        if isinstance(at, int | float) and isinstance(partition, int) \
                and at < clocks.get(partition, -math.inf):
            gone.append(entity)
    for entity in gone:
        del values[entity]
    return len(gone)


async def sweep_expired(table: Any, topic: str, owned: Container[int], now: float,
                        chunk: int = SWEEP_CHUNK, legacy: LegacyExpiry | None = None) -> int:
    """Delete the expired histories of ``owned`` partitions of ``topic`` from ``table``
    (the worker's Faust table), ``chunk`` values at a time between batches; how many
    (``legacy``: values of an older version too). A value written again since it was
    examined (its entity came back) is kept."""
    removed = 0
    keys = list(table.keys())
    for start in range(0, len(keys), chunk):
        part = keys[start:start + chunk]
        for entity, partition in expired(((k, table.get(k)) for k in part), now, owned,
                                         legacy):
            value = table.get(entity)
            if expired([(entity, value)], now, owned, legacy):
                with current_event(partition_event(topic, partition)):
                    del table[entity]
                removed += 1
        await asyncio.sleep(0)
    return removed


async def expire_owned(table: Any, consumer: Any, topic: str, bounds: StateBounds,
                       partitions: int) -> int:
    """The worker timer's sweep: :func:`sweep_expired` over the partitions of ``topic``
    that ``consumer`` holds now (``partitions``: the topic's count when the consumer
    does not know it), with the values of an older version given the longer of
    ``bounds``' TTLs, counted and logged; a failure is logged, never raised (a timer's
    exception would stop the worker), and the next run tries again."""
    try:
        owned = {tp.partition for tp in consumer.assignment() if tp.topic == topic}
        legacy = LegacyExpiry(max(bounds.entity_ttl_s, bounds.anonymous_ttl_s),
                              consumer.topic_partitions(topic) or partitions)
        removed = await sweep_expired(table, topic, owned, time.time(), legacy=legacy)
    except Exception:
        log.exception("the history expiry sweep failed; the next one tries again")
        return 0
    if removed:
        metrics.HISTORIES_EXPIRED.inc(removed)
        log.info("deleted %d histories of entities quiet past their TTL", removed)
    return removed
