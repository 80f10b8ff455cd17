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
so a restore or a rebalance does not bring them back. Values written before this
version carry no expiry and stay until their entity's next write.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Container, Iterable, Mapping, MutableMapping, Sequence
from typing import Any

from schemas import TopicEvent
from stream.bounds import StateBounds
from stream.faust_compat.internals import current_event, partition_event

#: Table value field: epoch seconds after which the history may be deleted.
EXPIRES = "x"
#: Table value field: the events partition the history's changelog records go to.
PARTITION = "p"
#: Values examined between two yields to the event loop (batches go on meanwhile).
SWEEP_CHUNK = 2000


def stamped(value: dict[str, Any], events: Sequence[TopicEvent], bounds: StateBounds,
            partition: int) -> dict[str, Any]:
    """``value`` (a history's ``to_dict``) with its expiry and partition: the TTL of an
    anonymous entity when its events are an anonymous id's (``user_id`` unset, or an
    ``identify``, which is the anonymous id's event), a user's otherwise."""
    anonymous = any(ev.user_id is None or ev.type == "identify" for ev in events)
    newest = max((ev.receive_time for ev in events), default=0.0)
    if math.isfinite(newest):
        value[EXPIRES] = int(newest) + bounds.ttl_s(anonymous)
    value[PARTITION] = partition
    return value


def expired(items: Iterable[tuple[str, Any]], now: float, owned: Container[int]
            ) -> list[tuple[str, int]]:
    """``(entity, partition)`` of the values in ``items`` past their expiry, on a
    partition in ``owned`` (another worker's entity is that worker's to delete)."""
    out: list[tuple[str, int]] = []
    for entity, value in items:
        if not isinstance(value, dict):
            continue
        at, partition = value.get(EXPIRES), value.get(PARTITION)
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
                        chunk: int = SWEEP_CHUNK) -> int:
    """Delete the expired histories of ``owned`` partitions of ``topic`` from ``table``
    (the worker's Faust table), ``chunk`` values at a time between batches; how many.
    A value written again since it was examined (its entity came back) is kept."""
    removed = 0
    keys = list(table.keys())
    for start in range(0, len(keys), chunk):
        part = keys[start:start + chunk]
        for entity, partition in expired(((k, table.get(k)) for k in part), now, owned):
            value = table.get(entity)
            if expired([(entity, value)], now, owned):
                with current_event(partition_event(topic, partition)):
                    del table[entity]
                removed += 1
        await asyncio.sleep(0)
    return removed
