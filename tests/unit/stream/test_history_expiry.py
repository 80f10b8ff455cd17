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
