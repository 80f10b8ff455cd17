"""The history table's TTL (``stream.history_expiry``) over a dict standing in for the
Faust table: the stamps, what is expired, and the sweep."""

from __future__ import annotations

import asyncio
from typing import Any

from schemas import TopicEvent
from stream.bounds import StateBounds
from stream.history_expiry import (
    EXPIRES,
    PARTITION,
    LegacyExpiry,
    drop_expired,
    expired,
    stamped,
    sweep_expired,
)

T = 1_700_000_000.0
BOUNDS = StateBounds(entity_ttl_s=1000, anonymous_ttl_s=100)


def view(**ids: Any) -> TopicEvent:
    return TopicEvent(event_id="e", type="view", item_id="i", ts=T, received_at=T, **ids)


def test_stamps_follow_the_newest_receive_time_and_the_entity_kind() -> None:
    user = stamped({}, [view(user_id="u")], BOUNDS, 3)
    assert user == {EXPIRES: int(T) + 1000, PARTITION: 3}
    anon = stamped({}, [view(anonymous_id="a")], BOUNDS, 1)
    assert anon[EXPIRES] == int(T) + 100
    identify = TopicEvent(event_id="i", type="identify", anonymous_id="a", user_id="u",
                          ts=T + 50, received_at=T + 50)
    # the identify is the anonymous id's event: the anonymous TTL, from the newest time
    assert stamped({}, [view(anonymous_id="a"), identify], BOUNDS, 1)[EXPIRES] == \
        int(T) + 150


def test_only_expired_values_of_owned_partitions() -> None:
    items = [("old", {EXPIRES: 10, PARTITION: 0}), ("fresh", {EXPIRES: 30, PARTITION: 0}),
             ("theirs", {EXPIRES: 10, PARTITION: 1}), ("unstamped", {"entries": []}),
             ("odd", {EXPIRES: "10", PARTITION: 0}), ("none", None)]
    assert expired(items, 20, {0}) == [("old", 0)]


def test_a_replay_drops_values_past_the_clock_of_their_own_partition() -> None:
    values: dict[str, Any] = {
        "old": {EXPIRES: 10, PARTITION: 0}, "fresh": {EXPIRES: 30, PARTITION: 0},
        "behind": {EXPIRES: 10, PARTITION: 1}, "unread": {EXPIRES: 10, PARTITION: 2},
        "unstamped": {"entries": []}, "none": None}
    # partition 1's clock has not passed its value's expiry; partition 2 has no clock
    assert drop_expired(values, {0: 20.0, 1: 5.0}) == 1
    assert set(values) == {"fresh", "behind", "unread", "unstamped", "none"}


class _Table(dict[str, Any]):
    """A dict that records the Faust current event of each deletion."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.routed: list[int] = []

    def __delitem__(self, key: str) -> None:
        from faust.streams import current_event

        event = current_event()
        assert event is not None  # Faust would refuse the write outside a stream
        self.routed.append(event.message.partition)
        super().__delitem__(key)


def test_the_sweep_deletes_each_on_its_partition() -> None:
    table = _Table({f"a{i}": {EXPIRES: 10, PARTITION: i % 2} for i in range(5)})
    table["live"] = {EXPIRES: 99, PARTITION: 0}
    removed = asyncio.run(sweep_expired(table, "events", {0, 1}, 20, chunk=2))
    assert removed == 5 and list(table) == ["live"]
    assert sorted(table.routed) == [0, 0, 0, 1, 1]


def test_values_of_an_older_version_expire_from_their_newest_receipt() -> None:
    # 0cb3bfc wrote no stamp: such a value stayed for good, however long its entity had
    # been gone. It expires with the longer TTL after its newest receive time, on the
    # partition its key hashes to (where its events and changelog records went).
    from core.kafka_tools import partition_of

    legacy = LegacyExpiry(ttl_s=1000, partitions=4)
    gone = {"entries": [["e1", "i", "view", T - 50, T], ["e2", "i", "view", T - 10]]}
    back = {"entries": [["e3", "i", "view", T - 5000, T + 900]]}
    received = {"entries": [], "received": T, "links": ["u1"], "alias": "u1"}
    items = [("gone", gone), ("back", back), ("linked", received),
             ("timeless", {"entries": []}), ("stamped", {PARTITION: 0}),
             ("odd", {"entries": [["e", "i", "view", "T"]]})]
    owned = set(range(4))
    assert expired(items, T + 1000.5, owned, legacy) == [
        ("gone", partition_of(b"gone", 4)), ("linked", partition_of(b"linked", 4))]
    assert expired(items, T + 999, owned, legacy) == []
    assert expired(items, T + 1000.5, owned) == []  # without the rule: as before
    # Another worker's partition: that worker's to delete.
    mine = {partition_of(b"linked", 4)}  # not gone's
    assert expired(items, T + 1000.5, mine, legacy) == [
        ("linked", partition_of(b"linked", 4))]


def test_the_sweep_deletes_old_values_on_their_keys_partition() -> None:
    from core.kafka_tools import partition_of

    table = _Table({"old": {"entries": [["e1", "i", "view", T]]},
                    "new": {"entries": [["e2", "i", "view", T]], EXPIRES: int(T) + 10**6,
                            PARTITION: 1}})
    legacy = LegacyExpiry(ttl_s=100, partitions=4)
    removed = asyncio.run(sweep_expired(table, "events", set(range(4)), T + 101,
                                        legacy=legacy))
    assert removed == 1 and list(table) == ["new"]
    assert table.routed == [partition_of(b"old", 4)]


def test_stamps_take_the_newest_time_and_any_anonymous_event_in_any_order() -> None:
    # stamped() runs for every history written: one plain pass, the same stamp as
    # any()/max() over the events gave
    late = TopicEvent(event_id="l", type="view", item_id="i", user_id="u", ts=T + 9,
                      received_at=T + 9)
    anon = TopicEvent(event_id="a", type="view", item_id="i", anonymous_id="a", ts=T - 5,
                      received_at=T - 5)
    assert stamped({}, [view(user_id="u"), late, view(user_id="u")], BOUNDS, 0)[EXPIRES] \
        == int(T) + 9 + 1000
    assert stamped({}, [late, anon], BOUNDS, 0)[EXPIRES] == int(T) + 9 + 100
    assert stamped({}, [], BOUNDS, 2) == {EXPIRES: 1000, PARTITION: 2}  # no event: 0 + a user's
