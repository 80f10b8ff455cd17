"""The worker's deferred history writes (``stream.history_store.TableHistoryStore``) over a
plain dict standing in for the Faust table."""

from __future__ import annotations

from stream.history_store import TableHistoryStore


class _Event:
    """Any weak-referenceable object serves as Faust's current event here."""


def test_a_forgotten_entity_s_deferred_write_never_reaches_the_table() -> None:
    table: dict[str, dict[str, int]] = {"u1": {"n": 1}}
    store = TableHistoryStore(table, {0: _Event()}, deferred=True)
    store.put("u1", {"n": 2}, 0)
    store.put("u2", {"n": 1}, 0)
    assert store.get("u1") == {"n": 2}
    store.delete("u1", 0)  # forgotten in the same batch, after its events were applied
    assert store.get("u1") is None
    assert store.flush() == 1
    assert table == {"u2": {"n": 1}}
