"""Histories of entities gone quiet leave the worker's table (a TTL on the table).

The worker keeps one history per entity in its Faust table, in memory, and every id a
client names makes one: with the public tracking key, anyone can create ids. Redis
state of an entity expires ``entity_ttl_s`` (``anonymous_ttl_s`` for anonymous ids)
after its last event (:class:`stream.bounds.StateBounds`); the table's values now do
too, so the table is bounded by the ids active within those TTLs, not by every id ever
seen.

Each table value the processor writes carries its expiry (:data:`EXPIRES`: the newest
receive time of the entity's events in the write plus the TTL, never earlier than the
value's stamp before, so a replay stamps the same value) and its source partition
(:data:`PARTITION`: its changelog tombstone must go where its records went).
:func:`sweep_expired` (a worker timer) deletes the expired ones of the partitions this
worker owns; a deletion is a tombstone on the changelog, so a restore or a rebalance
does not bring them back.

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
from collections.abc import Callable, Container, Iterable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from typing import Any

from core.kafka_tools import partition_of
from schemas import TopicEvent
from stream import metrics
from stream.bounds import StateBounds
from stream.faust_compat.internals import current_event, drop_local, partition_event

#: Table value field: epoch seconds after which the history may be deleted.
EXPIRES = "x"
#: Table value field: the events partition the history's changelog records go to.
PARTITION = "p"
log = logging.getLogger("streamrec.worker")

#: Values examined between two yields to the event loop (batches go on meanwhile)...
SWEEP_CHUNK = 2000
#: ... or seconds, whichever comes first.
SWEEP_SLICE_S = 0.01


def stamped(value: dict[str, Any], events: Sequence[TopicEvent], bounds: StateBounds,
            partition: int, previous: Any = None) -> dict[str, Any]:
    """``value`` (a history's ``to_dict``) with its expiry and partition: the TTL of an
    anonymous entity when its events are an anonymous id's (``user_id`` unset, or an
    ``identify``, which is the anonymous id's event), a user's otherwise. Never earlier
    than ``previous`` (the stored value)'s expiry: events received before the entity's
    newest (the entries an ``identify`` forwards keep their own receive times) do not
    shorten the life of a history whose entity was active since.

    An operator's backfill (``streamrec load --via kafka``: ``backfill`` events, whose
    receive time is their own old event time) counts from when it is applied, as the
    entity's Redis keys do: its histories were stamped expired, swept ten minutes after
    the load, and the shoppers' next events refolded them from nothing. (So a replay
    stamps a backfill's histories anew; every other stamp is the same in a replay.)"""
    # One plain pass, no generators: this runs for every history the worker writes.
    anonymous = False
    newest = -math.inf
    for ev in events:
        anonymous = anonymous or ev.user_id is None or ev.type == "identify"
        received = time.time() if ev.backfill else ev.receive_time
        if received > newest:
            newest = received
    if not events:
        newest = 0.0  # as max(default=0.0) gave
    if math.isfinite(newest):
        value[EXPIRES] = int(newest) + bounds.ttl_s(anonymous)
    before = previous.get(EXPIRES) if isinstance(previous, dict) else None
    if isinstance(before, int) and before > value.get(EXPIRES, before - 1):
        value[EXPIRES] = before
    value[PARTITION] = partition
    return value


def _newest_receipt(value: dict[str, Any]) -> float | None:
    """The newest receive time a history value of an older version records (its entries'
    ``[id, item, type, ts(, received)]``, its receipts' ``[id, item, type, received]``,
    its first event's), or None when it records none."""
    times: list[Any] = [value.get("received")]
    times += [e[4] if len(e) > 4 else e[3] for e in value.get("entries") or ()
              if isinstance(e, list | tuple) and len(e) > 3]
    times += [r[3] for r in value.get("receipts") or ()
              if isinstance(r, list | tuple) and len(r) > 3]
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


def advance(clocks: dict[int, float], batch: Iterable[tuple[TopicEvent, int]]) -> None:
    """Move each partition's clock (``clocks``: partition → the newest receive time read
    from it) past the ``(event, partition)`` pairs of ``batch``."""
    for ev, partition in batch:
        t = ev.receive_time
        if t > clocks.get(partition, -math.inf):
            clocks[partition] = t


def foreign(entity: str, value: Any, owned: Container[int],
            legacy: LegacyExpiry | None = None) -> bool:
    """Whether ``value`` (``entity``'s history) is of a partition not in ``owned``: one
    this worker wrote while it owned the partition, before a rebalance moved it."""
    if not isinstance(value, dict):
        return False
    partition = value.get(PARTITION)
    if partition is None and legacy is not None:
        partition = partition_of(entity.encode(), legacy.partitions)
    return isinstance(partition, int) and partition not in owned


def expired(items: Iterable[tuple[str, Any]], now: float, owned: Container[int],
            legacy: LegacyExpiry | None = None,
            clocks: Mapping[int, float] | None = None) -> list[tuple[str, int]]:
    """``(entity, partition)`` of the values in ``items`` past their expiry, on a
    partition in ``owned`` (another worker's entity is that worker's to delete); with
    ``legacy``, values of an older version too. With ``clocks`` (:func:`advance`), a
    value is past its expiry only by its partition's clock as well as by ``now``: a
    worker behind its log (a replay, a restart after days away) deletes what the live
    run would have deleted by then, never a history whose newer events are still to
    come; a partition not read from yet expires nothing."""
    out: list[tuple[str, int]] = []
    for entity, value in items:
        if not isinstance(value, dict):
            continue
        at, partition = value.get(EXPIRES), value.get(PARTITION)
        if legacy is not None and at is None and partition is None:
            at, partition = legacy(entity, value)
        if not (isinstance(at, int | float) and isinstance(partition, int)
                and partition in owned):
            continue
        if at < (now if clocks is None else min(now, clocks.get(partition, -math.inf))):
            out.append((entity, partition))
    return out


class _Every:
    """Every partition (a rebuild holds them all)."""

    def __contains__(self, _partition: object) -> bool:
        return True


def drop_expired(values: MutableMapping[str, Any], clocks: Mapping[int, float]) -> int:
    """Delete from ``values`` (histories by entity: a rebuild's, ``stream.rebuild``) those
    past their expiry by the clock of their partition (``clocks``: partition → the newest
    receive time read from it): the worker's table held them no more by then
    (:func:`sweep_expired`), so a replay of the whole log need not either; how many."""
    gone = expired(values.items(), math.inf, _Every(), clocks=clocks)
    for entity, _ in gone:
        del values[entity]
    return len(gone)


async def sweep_expired(table: Any, topic: str, owned: Container[int], now: float,
                        chunk: int = SWEEP_CHUNK, legacy: LegacyExpiry | None = None,
                        halt: Callable[[], bool] | None = None,
                        clocks: Mapping[int, float] | None = None,
                        drop: Callable[[str], None] | None = None) -> int:
    """Delete the expired histories of ``owned`` partitions of ``topic`` from ``table``
    (the worker's Faust table), between batches: it yields to the event loop after
    ``chunk`` values or :data:`SWEEP_SLICE_S`, whichever comes first (a value of an older
    version costs a scan of its entries); how many (``legacy``: values of an older
    version too). Each value is examined and deleted without a yield in between, so one
    written meanwhile (its entity came back) is kept. The sweep stops at a yield once
    ``halt`` says so (a rebalance: see :func:`expire_owned`); ``clocks`` as for
    :func:`expired`. With ``drop``, the histories of partitions not owned
    (:func:`foreign`) go to it (to leave this worker's memory only)."""
    removed = examined = 0
    since = time.monotonic()
    if halt is not None and halt():
        return 0
    for entity in list(table.keys()):
        if examined >= chunk or time.monotonic() - since >= SWEEP_SLICE_S:
            await asyncio.sleep(0)
            if halt is not None and halt():
                break
            examined, since = 0, time.monotonic()
        examined += 1
        value = table.get(entity)
        if drop is not None and foreign(entity, value, owned, legacy):
            drop(entity)
            continue
        for _, partition in expired([(entity, value)], now, owned, legacy, clocks):
            with current_event(partition_event(topic, partition)):
                del table[entity]
            removed += 1
    return removed


def rebalanced(app: Any) -> Callable[[], bool]:
    """Whether ``app`` (the Faust app) is in a rebalance now, or has been in one since
    this call. A rebalance lasts until the table has restored the partitions it got
    (Faust ends it after the recovery): until then the table holds of them what was
    read so far, perhaps a history as it stood long ago whose newer record is further
    on, and a tombstone written then, after that record, deleted a live history for
    good (the next restore reads it last). Partitions also change owner meanwhile."""
    count = app.rebalancing_count
    return lambda: bool(app.rebalancing or getattr(app, "in_recovery", False)
                        or app.rebalancing_count != count)


def holds_none(app: Any) -> bool:
    """Whether the last rebalance gave ``app`` no active partition at all (more workers
    than partitions), by Faust's assignor, not only by the consumer's assignment."""
    try:
        return not app.assignor.assigned_actives()
    except Exception:  # noqa: BLE001 - no assignment yet: keep everything
        return False


async def expire_owned(table: Any, app: Any, topic: str, bounds: StateBounds,
                       partitions: int, clocks: Mapping[int, float]) -> int:
    """The worker timer's sweep: :func:`sweep_expired` over the partitions of ``topic``
    that ``app``'s consumer holds now (``partitions``: the topic's count when the
    consumer does not know it), with the values of an older version given the longer
    of ``bounds``' TTLs and each partition judged by its clock too (``clocks``, the
    processor's: :func:`expired`), counted and logged; none during a rebalance, and a sweep a
    rebalance starts in stops (:func:`rebalanced`: the next run goes on). Histories of
    partitions a rebalance took from this worker leave its memory (no tombstone: their
    new owner keeps them; Faust drops only those it restored); with no partition, all of
    them, once Faust's assignor agrees it was given none (an assignment read empty for a
    moment must not empty the table). A failure is
    logged, never raised (a timer's exception would stop the worker), and the next run
    tries again. Sets ``streamrec_histories_held`` to the table's size after a sweep."""
    try:
        halt = rebalanced(app)
        if halt():
            return 0
        consumer = app.consumer
        owned = {tp.partition for tp in consumer.assignment() if tp.topic == topic}
        legacy = LegacyExpiry(max(bounds.entity_ttl_s, bounds.anonymous_ttl_s),
                              consumer.topic_partitions(topic) or partitions)
        dropped: list[str] = []

        def let_go(entity: str) -> None:
            drop_local(table, entity)
            dropped.append(entity)
        removed = await sweep_expired(table, topic, owned, time.time(), legacy=legacy,
                                      halt=halt, clocks=clocks,
                                      drop=let_go if owned or holds_none(app) else None)
    except Exception:
        log.exception("the history expiry sweep failed; the next one tries again")
        return 0
    metrics.HISTORIES_HELD.set(len(table))
    if dropped:
        log.info("let go of %d histories of partitions another worker owns now",
                 len(dropped))
    if removed:
        metrics.HISTORIES_EXPIRED.inc(removed)
        log.info("deleted %d histories of entities quiet past their TTL", removed)
    return removed
