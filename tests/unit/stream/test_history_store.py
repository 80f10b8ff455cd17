"""The worker's deferred history writes (``stream.history_store.TableHistoryStore``) over a
small stand-in for the Faust table: its store is a dict, its changelog a list."""

from __future__ import annotations

import asyncio
import gc
from types import SimpleNamespace
from typing import Any

import faust
import orjson

from core.settings import Settings
from recommender.history import History
from stream.history_store import (
    TableHistoryStore,
    changelog_record,
    changelog_value_now,
    history_table,
)


class _Event:
    """Any weak-referenceable object serves as Faust's current event here."""


class _Topic:
    def get_topic_name(self) -> str:
        return "streamrec-user_history-changelog"


class _Table(dict[str, Any]):
    """``table[key]`` reads, ``table.data`` the store a flush writes to."""

    def __init__(self, items: dict[str, Any]) -> None:
        super().__init__(items)
        self.data = self
        self.changelog_topic = _Topic()


def _flush(store: TableHistoryStore) -> tuple[int, list[Any]]:
    sent: list[Any] = []

    async def send(topic: str, records: list[tuple[bytes, bytes, int]]) -> None:
        sent.append((topic, records))

    return asyncio.run(store.flush(send)), sent


def test_a_forgotten_entity_s_deferred_write_never_reaches_the_table() -> None:
    table = _Table({"u1": {"n": 1}})
    store = TableHistoryStore(table, {0: _Event()}, deferred=True)
    store.put("u1", {"n": 2}, 0)
    store.put("u2", {"n": 1}, 0)
    assert store.get("u1") == {"n": 2}
    store.delete("u1", 0)  # forgotten in the same batch, after its events were applied
    assert store.get("u1") is None
    written, sent = _flush(store)
    assert written == 1
    assert table == {"u2": {"n": 1}}
    assert [records for _, records in sent] == [[(b'"u2"', b'{"n":1}', 0)]]


def test_a_batch_s_histories_reach_the_changelog_in_one_hand_over_as_faust_s_json() -> None:
    table = _Table({})
    store = TableHistoryStore(table, {0: _Event(), 3: _Event()}, deferred=True)
    store.put("u1", {"entries": [["e1", "i1", "view", 1.5]]}, 3)
    store.put("u2", {"entries": []}, 0)
    store.put("u1", {"entries": [["e1", "i1", "view", 1.5], ["e2", "i2", "buy", 2.0]]}, 3)
    assert table == {}  # nothing before the flush
    written, sent = _flush(store)
    assert written == 2
    assert len(sent) == 1  # one call: the producer gets the batch's records together
    topic, records = sent[0]
    assert topic == "streamrec-user_history-changelog"
    assert [(key, partition) for key, _, partition in records] == [(b'"u1"', 3), (b'"u2"', 0)]
    assert orjson.loads(records[0][1]) == table["u1"]
    assert _flush(store) == (0, [])


def test_a_changelog_record_is_byte_for_byte_what_the_table_s_own_write_sends(
        tmp_path: Any) -> None:
    """Recovery decodes the records with the table's serializers: the direct path must
    write what Faust would (a raw key here made every record fail to restore)."""
    app = faust.App("history-store-test", broker="kafka://127.0.0.1:1", store="memory://")
    table = history_table(app, Settings(state_dir=tmp_path))
    topic = table.changelog_topic
    value = {"entries": [["e1", "i1", "view", 1.5], ["e2", "ü", "buy", 2.0, 2.5]],
             "alias": "u9", "bought": [["i1", 3.0]]}
    key, raw = changelog_record("ü1", value)
    assert key == topic.prepare_key("ü1", table.key_serializer, topic.schema)[0]
    assert raw == topic.prepare_value(value, table.value_serializer, topic.schema)[0]


def test_a_held_record_s_key_reads_the_history_now_as_its_record_carries_it() -> None:
    value = {"entries": [["e1", "i1", "view", 1.5]], "x": 2.0, "p": 3}
    table = _Table({"u1": value})
    key, record = changelog_record("u1", value)
    assert changelog_value_now(table, key) == record
    assert changelog_value_now(table, changelog_record("u2", value)[0]) is None


def _restored(key: str, raw: bytes | None, partition: int = 0) -> Any:
    """A changelog event as Faust's recovery hands it to the table (value decoded)."""
    return SimpleNamespace(key=key, value=None if raw is None else orjson.loads(raw),
                           message=SimpleNamespace(value=raw, partition=partition))


def test_a_restored_history_is_stored_as_the_worker_s_writes_store_it(tmp_path: Any) -> None:
    """Recovery (a restart, a rebalance's takeover) stores tuples as ``to_dict`` does, not
    JSON's lists: the collector stops tracking them, lists it walked at every
    older-generation collection until the entity's next write."""
    app = faust.App("history-restore-test", broker="kafka://127.0.0.1:1", store="memory://")
    table = history_table(app, Settings(state_dir=tmp_path))
    history = History.from_dict({"entries": [["e1", "i1", "view", 1.5],
                                             ["e2", "i2", "buy", 2.0, 2.5]],
                                 "alias": "u9", "links": ["u8", "u9"],
                                 "bought": [["i2", 2.0]], "handed": 2.5})
    written = history.to_dict()
    table.apply_changelog_batch([_restored("u1", changelog_record("u1", written)[1]),
                                 _restored("u2", b'{"entries": []}'),
                                 _restored("u2", None)])  # a tombstone deletes
    restored = table.data["u1"]
    assert restored == written and "u2" not in table.data
    assert all(type(v) is tuple for v in (restored["entries"], restored["entries"][0],
                                          restored["links"], restored["bought"][0]))
    assert History.from_dict(restored) == history
    gc.collect()  # one pass: the entries (the bulk); the next, what holds them, as written
    assert not any(gc.is_tracked(v) for v in (*restored["entries"], restored["links"]))
    gc.collect()
    assert not gc.is_tracked(restored["entries"]) and not gc.is_tracked(restored)
