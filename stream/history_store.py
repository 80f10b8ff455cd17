"""Where entity histories live: the worker's changelog-backed Faust table, or a dict.

The processor reads and writes histories through :class:`HistoryStore` only. The worker
keeps them in a Faust table (:func:`history_table`, :class:`TableHistoryStore`), whose
changelog topic restores them after a restart or a rebalance; a rebuild from the log,
the processor benchmark, the row-list check and tests that drive ``EventProcessor``
directly use :class:`DictStore` instead (Redis stays real in those tests).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import faust
import orjson

from core.settings import Settings
from core.topics import HISTORY_TABLE, changelog_configs
from stream.faust_compat.internals import current_event
from stream.faust_compat.restored_values import set_restored_values

#: Hands a batch's changelog records ``(key, value, partition)`` to the producer, all in
#: one go (:func:`stream.deliveries.send_changelog`); the first argument is the topic.
ChangelogSend = Callable[[str, list[tuple[bytes, bytes, int]]], Awaitable[None]]


class HistoryStore(Protocol):
    """Where entity histories live (the worker's changelog-backed Faust table)."""

    def get(self, entity: str) -> dict[str, Any] | None:
        """The stored history of an entity, or None."""

    def put(self, entity: str, value: dict[str, Any], partition: int) -> None:
        """Store an entity's history; ``partition`` is that of its source message."""

    def delete(self, entity: str, partition: int) -> None:
        """Forget an entity's history (``stream.forget``); ``partition`` as for put."""


class DictStore:
    """A :class:`HistoryStore` over a plain dict."""

    def __init__(self) -> None:
        self.data: dict[str, Any] = {}

    def get(self, entity: str) -> dict[str, Any] | None:
        """The stored history of an entity, or None."""
        return self.data.get(entity)

    def put(self, entity: str, value: dict[str, Any], partition: int) -> None:
        """Store an entity's history (the partition only matters to the Faust table)."""
        self.data[entity] = value

    def delete(self, entity: str, partition: int) -> None:
        """Forget an entity's history."""
        self.data.pop(entity, None)


def history_table(app: faust.App, settings: Settings) -> Any:
    """The worker's history table: JSON values by entity id, one partition per events
    partition (a user's history lives on the partition its events are keyed to); values
    its changelog restores are stored as :func:`stored_form` makes them."""
    table = app.Table(
        HISTORY_TABLE,
        default=None,
        partitions=settings.topic_partitions,
        # Faust makes the changelog compacted; the replicas' rule comes from settings.
        extra_topic_configs=changelog_configs(settings),
        schema=faust.Schema(key_type=str, key_serializer="raw", value_serializer="json"),
    )
    set_restored_values(table, stored_form)
    return table


def stored_form(value: Any) -> Any:
    """A history decoded from its changelog record (JSON arrays as lists) in the form the
    worker's writes store (``History.to_dict``: tuples, two levels deep), in place.

    Tuples of plain values stop being tracked by the collector at its first pass over
    them; lists stay tracked, and a restored table's histories were walked by every
    older-generation collection until each entity's next write (issue 14). A tombstone's
    ``None`` and any other non-dict value come back as they are."""
    if type(value) is dict:
        for name, field in value.items():
            if type(field) is list:  # lists of lists (entries, pairs) or of ids (links)
                value[name] = tuple([tuple(x) if type(x) is list else x for x in field])
    return value


#: What Faust's ``json`` codec passes to orjson (``faust.utils.json.dumps``).
_JSON_OPTIONS = orjson.OPT_NON_STR_KEYS | orjson.OPT_UTC_Z


def changelog_record(entity: str, value: dict[str, Any]) -> tuple[bytes, bytes]:
    """An entity's history as the key and value of its changelog record, byte for byte
    what the table's own writes send: Faust serializes both with its ``json`` codec (the
    table has no key type, so the ``raw`` of its schema does not apply)."""
    return orjson.dumps(entity), orjson.dumps(value, option=_JSON_OPTIONS)


def changelog_value_now(table: Any, key: bytes) -> bytes | None:
    """The ``table``'s history now for a changelog record's ``key``, as the record
    carries it, or None when it holds none: what a held record of the key is sent again
    as (``stream.deliveries.to_send_again``)."""
    value = table.get(orjson.loads(key))
    return None if value is None else orjson.dumps(value, option=_JSON_OPTIONS)


class TableHistoryStore:
    """A :class:`HistoryStore` over the Faust table, writing each key's changelog to the
    partition its source message came from (a batch mixes partitions).

    ``events_by_partition`` holds one event of the batch per source partition: Faust
    routes a table write's changelog record by its current event.

    With ``deferred``, writes stay in this object until :meth:`flush` (reads see them):
    the worker applies a large batch in several steps, and an entity changed in several
    of them then costs one changelog record, not one per step; every table write of the
    batch still happens before the batch is acknowledged. Each changelog record is a
    produce request's worth of work in Faust and aiokafka, about a third of the worker's
    CPU on a backlog before (issue 14).
    """

    def __init__(self, table: Any, events_by_partition: dict[int, Any], *,
                 deferred: bool = False) -> None:
        self.table = table
        self.events_by_partition = events_by_partition
        self._pending: dict[str, tuple[dict[str, Any], int]] | None = {} if deferred else None

    def get(self, entity: str) -> dict[str, Any] | None:
        """The entity's history or None."""
        if self._pending:
            found = self._pending.get(entity)
            if found is not None:
                return found[0]
        return self.table.get(entity)

    def put(self, entity: str, value: dict[str, Any], partition: int) -> None:
        """Store a history with its changelog on the source partition (at :meth:`flush`
        when deferred)."""
        if self._pending is not None:
            self._pending[entity] = (value, partition)
            return
        with current_event(self.events_by_partition[partition]):
            self.table[entity] = value

    async def flush(self, send: ChangelogSend) -> int:
        """Write the deferred histories to the table's store and hand their changelog
        records to ``send`` in one go; how many.

        Not through ``table[key] = value``: Faust queues each such record in its producer
        buffer, which hands it to aiokafka one event-loop turn at a time, and every turn
        let aiokafka's sender start another produce request with the few records it had
        (~4-5 records a request, ~350 requests/s at 2,000 events/s held). Handed over
        together, a batch's records leave in one request per broker. Key and value are
        what Faust writes (:func:`changelog_record`), so recovery reads them as before.
        """
        if not self._pending:
            return 0
        data = self.table.data
        records: list[tuple[bytes, bytes, int]] = []
        for entity, (value, partition) in self._pending.items():
            data[entity] = value
            records.append((*changelog_record(entity, value), partition))
        self._pending.clear()
        await send(self.table.changelog_topic.get_topic_name(), records)
        return len(records)

    def delete(self, entity: str, partition: int) -> None:
        """Delete a history (a tombstone on its changelog partition): ``stream.forget``;
        a deferred write of it is dropped first."""
        if self._pending:
            self._pending.pop(entity, None)
        with current_event(self.events_by_partition[partition]):
            if entity in self.table:
                del self.table[entity]
